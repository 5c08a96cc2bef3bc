#!/usr/bin/env python3
"""Checks the links of README.md and of the book under docs/src.

For README.md and every Markdown file under docs/src:

- every relative link or image target must exist;
- every `#anchor`, in the same file or another Markdown file, must match a
  heading's anchor as mdBook and GitHub generate it (lower case, spaces to
  hyphens, punctuation dropped, `-1`, `-2`, ... for repeated headings);
- a link from a book page must stay inside docs/src (mdBook renders nothing
  outside it; name repository files in `code` instead);
- external links are not fetched, but must be well-formed http(s) URLs (or
  mailto: addresses);
- every Markdown file under docs/src must be listed in docs/src/SUMMARY.md,
  except one that another page includes;
- `{{#include file}}` is expanded as mdBook does (the file, relative to the
  including page, must exist), so links and headings of an included file are
  checked as part of the page that includes it.

Prints each problem as `file:line: message` and exits 1 if there is any.
Python 3 standard library only; run from anywhere:

    python3 docs/check-links.py
"""

import os
import re
import sys
from urllib.parse import unquote, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOK_SRC = os.path.join(ROOT, "docs", "src")
SUMMARY = os.path.join(BOOK_SRC, "SUMMARY.md")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(
    r"(!?)\[((?:[^\[\]\\]|\\.|\[[^\[\]]*\])*)\]\(\s*(<[^>\n]*>|[^\s()]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)", re.M)
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
HTML_ATTR = re.compile(r"\b(?:href|src)\s*=\s*\"([^\"]*)\"")
INCLUDE = re.compile(r"^\{\{#include\s+([^}\s]+)\s*\}\}[ \t]*$")

problems = []


def report(path, line, message):
    problems.append(f"{os.path.relpath(path, ROOT)}:{line}: {message}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


included = set()
_rendered = {}


def rendered(path, depth=0):
    """The page as mdBook sees it: each `{{#include file}}` line replaced by
    the file's text. Only whole-file includes are used in this book, so a
    line range or anchor after the name is reported rather than guessed at.
    Line numbers reported for a page count the lines of what it includes."""
    if path in _rendered:
        return _rendered[path]
    out = []
    for number, line in enumerate(read(path).split("\n"), 1):
        m = INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        name = m.group(1)
        dest = os.path.normpath(os.path.join(os.path.dirname(path), name))
        if ":" in name:
            report(path, number, f"only whole-file includes are checked: {name}")
        elif not os.path.isfile(dest):
            report(path, number, f"included file does not exist: {name}")
        elif depth > 8:
            report(path, number, f"includes nest too deep: {name}")
        else:
            included.add(dest)
            out.append(rendered(dest, depth + 1))
    _rendered[path] = "\n".join(out)
    return _rendered[path]


def code_spans_blanked(line):
    """The line with the contents of `code spans` replaced by spaces."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            ticks = line[i:j]
            end = line.find(ticks, j)
            if end == -1:
                out.append(line[i:j])
                i = j
                continue
            out.append(" " * (end + len(ticks) - i))
            i = end + len(ticks)
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def prose(text):
    """The text with fenced code blocks and code spans blanked, offsets kept."""
    lines, fence = [], None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            lines.append(" " * len(line))
            continue
        if m:
            fence = m.group(1)
            lines.append(" " * len(line))
            continue
        lines.append(code_spans_blanked(line))
    return "\n".join(lines)


def heading_text(raw):
    """What a heading renders as: markup removed, code span contents kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "")
    text = re.sub(r"(\*+)(.*?)\1", r"\2", text)  # *emphasis*, **strong**
    text = re.sub(r"\\(.)", r"\1", text)  # backslash escapes
    return text.strip()


def anchor_of(text):
    """mdBook's normalize_id, which GitHub's anchors agree with for ASCII text."""
    out = []
    for ch in text:
        if ch.isalnum() or ch in "_-":
            out.append(ch.lower())
        elif ch.isspace():
            out.append("-")
    return "".join(out)


_anchors = {}


def anchors(path):
    """The heading anchors of a Markdown file, repeated headings numbered."""
    if path not in _anchors:
        seen, found, fence = {}, set(), None
        for line in rendered(path).split("\n"):
            m = FENCE.match(line)
            if fence:
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                    fence = None
                continue
            if m:
                fence = m.group(1)
                continue
            h = ATX_HEADING.match(line)
            if not h:
                continue
            base = anchor_of(heading_text(h.group(2) or ""))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        _anchors[path] = found
    return _anchors[path]


def check_external(path, line, target):
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host or not re.fullmatch(r"[A-Za-z0-9.-]+", host) or "." not in host:
            report(path, line, f"malformed URL: {target}")
    elif parts.scheme == "mailto":
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", parts.path):
            report(path, line, f"malformed mailto link: {target}")
    else:
        report(path, line, f"unsupported link scheme: {target}")


def check_target(path, line, target):
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target:
        report(path, line, "empty link target")
        return
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
        check_external(path, line, target)
        return
    file_part, _, anchor = target.partition("#")
    file_part = unquote(file_part)
    if file_part.startswith("/"):
        report(path, line, f"absolute path (use a relative link): {target}")
        return
    dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if not os.path.exists(dest):
        report(path, line, f"no such file: {target}")
        return
    in_book = os.path.commonpath([path, BOOK_SRC]) == BOOK_SRC
    if in_book and os.path.commonpath([dest, BOOK_SRC]) != BOOK_SRC:
        report(path, line, f"leaves the book (docs/src), so mdBook cannot render it: {target}")
    if anchor:
        if not dest.endswith(".md"):
            report(path, line, f"anchor on a file that is not Markdown: {target}")
        elif unquote(anchor) not in anchors(dest):
            report(path, line, f"no heading for #{anchor} in {os.path.relpath(dest, ROOT)}")


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def check_file(path):
    text = prose(rendered(path))
    for m in INLINE_LINK.finditer(text):
        check_target(path, line_of(text, m.start(3)), m.group(3))
    for m in REFERENCE_DEF.finditer(text):
        check_target(path, line_of(text, m.start(2)), m.group(2))
    for m in AUTOLINK.finditer(text):
        check_external(path, line_of(text, m.start(1)), m.group(1))
    for m in HTML_ATTR.finditer(text):
        check_target(path, line_of(text, m.start(1)), m.group(1))


def book_pages():
    pages = []
    for folder, dirs, files in os.walk(BOOK_SRC):
        dirs.sort()
        pages.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".md"))
    return pages


def check_summary(pages):
    if not os.path.exists(SUMMARY):
        report(SUMMARY, 1, "docs/src/SUMMARY.md is missing")
        return
    text = prose(read(SUMMARY))
    listed = set()
    for m in INLINE_LINK.finditer(text):
        target = m.group(3).strip("<>").partition("#")[0]
        if target and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
            listed.add(os.path.normpath(os.path.join(BOOK_SRC, unquote(target))))
    for page in pages:
        if page != SUMMARY and page not in listed and page not in included:
            report(page, 1, "not listed in docs/src/SUMMARY.md")


def main():
    pages = book_pages()
    for path in [os.path.join(ROOT, "README.md")] + pages:
        check_file(path)
    # An included file's links resolve from the page that includes it, where
    # they were checked; on its own it is not a page.
    problems[:] = [p for p in problems if not any(
        p.startswith(os.path.relpath(f, ROOT) + ":") for f in included)]
    check_summary(pages)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} broken link(s)", file=sys.stderr)
        return 1
    print(f"links OK: README.md and {len(pages)} book page(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
