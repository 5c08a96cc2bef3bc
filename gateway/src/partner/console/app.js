// The partner console: a page over the partner listener's own API. Every
// value is put in the page as text, never as markup; changes carry the
// session's CSRF token; a new key lives only in this page until reload.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = null;

function say(text) { $("message").textContent = text || ""; }

async function call(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401 && path !== "/console/session") { show(false); }
  if (!resp.ok) { throw new Error(data.code ? `${data.code}: ${data.title}` : `HTTP ${resp.status}`); }
  return data;
}

function when(secs) { return secs ? new Date(secs * 1000).toISOString().replace(".000Z", "Z") : "never"; }

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; }

function button(text, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = text; if (cls) b.className = cls; b.addEventListener("click", onclick); return b;
}

function issued(key) { $("issued-key").textContent = key; $("issued").hidden = false; }

async function refresh() {
  const listed = await call("GET", "/v1/keys");
  const body = $("keys").tBodies[0];
  body.replaceChildren();
  for (const k of listed.keys) {
    const row = body.insertRow();
    row.dataset.keyId = k.key_id;
    cell(row, k.name); cell(row, k.key_id); cell(row, when(k.created_at));
    cell(row, when(k.last_used_at)); cell(row, k.expires_at ? when(k.expires_at) : "no expiry");
    const actions = cell(row, "");
    actions.appendChild(button("Regenerate", "", () => act(async () => {
      issued((await call("POST", `/v1/keys/${k.key_id}/regenerate`)).key);
    })));
    actions.appendChild(button("Revoke", "danger", () => act(async () => {
      if (confirm(`Revoke ${k.name}? It stops working everywhere at once.`)) {
        await call("DELETE", `/v1/keys/${k.key_id}`);
      }
    })));
  }
  const activity = await call("GET", "/v1/activity");
  const log = $("activity").tBodies[0];
  log.replaceChildren();
  for (const e of activity.entries) {
    const row = log.insertRow();
    cell(row, e.time || ""); cell(row, e.what || ""); cell(row, e.path || "");
    cell(row, e.status == null ? "" : String(e.status));
    cell(row, e.decision || "").className = e.decision || "";
    cell(row, e.reason || "");
  }
}

async function act(work) {
  say("");
  try { await work(); await refresh(); } catch (e) { say(e.message); }
}

function show(signedIn, partner) {
  $("sign-in-view").hidden = signedIn;
  $("console-view").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("partner").textContent = signedIn ? partner : "";
  if (!signedIn) { csrf = null; $("issued").hidden = true; }
}

$("sign-in-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act(async () => {
    const s = await call("POST", "/console/session", { credential: $("credential").value, code: $("code").value });
    $("credential").value = ""; $("code").value = "";
    csrf = s.csrf; show(true, s.partner);
  });
});

$("create-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act(async () => { issued((await call("POST", "/v1/keys", { name: $("new-name").value })).key); $("new-name").value = ""; });
});

$("revoke-all").addEventListener("click", () => act(async () => {
  if (confirm("Revoke every key now? Every client using them is refused at once.")) {
    await call("POST", "/v1/keys/revoke-all");
  }
}));

$("sign-out").addEventListener("click", async () => {
  try { await call("DELETE", "/console/session"); } catch (e) { /* signed out either way */ }
  show(false);
});

// A session from before a reload still holds; its CSRF token is asked for again.
(async () => {
  try { const s = await call("GET", "/console/session"); csrf = s.csrf; show(true, s.partner); await refresh(); }
  catch (e) { show(false); say(""); }
})();
