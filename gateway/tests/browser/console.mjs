// The partner console in a real browser (Debian's chromium, through
// playwright-core): sign in with a management credential and a one-time
// code, list, create, regenerate, revoke, revoke all, and the activity
// view. Run by gateway/tests/e2e/console_browser.rs, which starts the
// gateway and checks afterwards, on the data listener, that what the page
// did is what happened. Prints one JSON line of what it saw.
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

const { CONSOLE_URL, CREDENTIAL, TOTP_SECRET_HEX, SCREENSHOTS } = process.env;

function totp(secretHex, now = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / 30)));
  const mac = createHmac("sha1", Buffer.from(secretHex, "hex")).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const word = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(word % 1_000_000).padStart(6, "0");
}

function check(condition, what) {
  if (!condition) throw new Error(`console: ${what}`);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const seen = {};
try {
  // The test CA is not the browser's: TLS itself is tested elsewhere.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  const violations = [];
  page.on("console", (msg) => { if (/Content Security Policy/i.test(msg.text())) violations.push(msg.text()); });
  page.on("dialog", (dialog) => dialog.accept());
  const rows = () => page.locator("#keys tbody tr");

  await page.goto(`${CONSOLE_URL}/console`);
  await page.locator("#sign-in-view").waitFor({ state: "visible" });
  await page.screenshot({ path: `${SCREENSHOTS}/console-sign-in.png` });

  await page.fill("#credential", CREDENTIAL);
  await page.fill("#code", totp(TOTP_SECRET_HEX));
  await page.click("#sign-in");
  await page.locator("#console-view").waitFor({ state: "visible" });
  await rows().first().waitFor();
  check((await page.textContent("#partner")) === "acme", "signed in as acme");
  check((await rows().count()) === 1, "one key listed");
  check((await rows().first().textContent()).includes("primary"), "the primary key listed");

  await page.fill("#new-name", "billing");
  await page.click("#create");
  await page.locator("#issued").waitFor({ state: "visible" });
  seen.created = (await page.textContent("#issued-key")).trim();
  check(seen.created.startsWith("ptc_live_"), "the new key shown");
  await page.locator("#keys tbody tr", { hasText: "billing" }).waitFor();
  await page.screenshot({ path: `${SCREENSHOTS}/console-new-key.png` });

  // Shown once: after a reload the session holds and the key is gone.
  await page.reload();
  await page.locator("#console-view").waitFor({ state: "visible" });
  await rows().nth(1).waitFor();
  check(!(await page.content()).includes(seen.created), "the key is not in the page after reload");

  const billing = page.locator("#keys tbody tr", { hasText: "billing" });
  await billing.getByText("Regenerate").click();
  await page.locator("#issued").waitFor({ state: "visible" });
  await page.waitForFunction((old) => document.getElementById("issued-key").textContent !== old, seen.created);
  seen.regenerated = (await page.textContent("#issued-key")).trim();
  check(seen.regenerated.startsWith("ptc_live_") && seen.regenerated !== seen.created, "a new key after regenerate");

  await page.locator("#keys tbody tr", { hasText: "billing" }).getByText("Revoke").click();
  await page.locator("#keys tbody tr", { hasText: "billing" }).waitFor({ state: "detached" });
  check((await rows().count()) === 1, "billing revoked");

  await page.locator("#activity tbody tr").first().waitFor();
  seen.activity = await page.locator("#activity tbody").textContent();
  await page.screenshot({ path: `${SCREENSHOTS}/console-activity.png`, fullPage: true });

  await page.click("#revoke-all");
  await rows().first().waitFor({ state: "detached" });
  check((await rows().count()) === 0, "every key revoked");

  await page.click("#sign-out");
  await page.locator("#sign-in-view").waitFor({ state: "visible" });
  seen.violations = violations;
  check(violations.length === 0, `no CSP violation: ${violations.join("; ")}`);
  console.log(JSON.stringify(seen));
} catch (e) {
  // What the page said, to tell a gateway refusal from a page bug.
  const pages = browser.contexts().flatMap((c) => c.pages());
  const said = pages.length ? await pages[0].textContent("#message").catch(() => "") : "";
  console.error(`page message: ${said}`);
  throw e;
} finally {
  await browser.close();
}
