// The console's page: four views over the read-only JSON API of
// `calicoctl console`, polled every few seconds. Every text from the API
// goes in with textContent, never as HTML.
"use strict";

const POLL_MS = 3000;
let view = "flows";
let paused = false;
let selected = null; // the flow whose trace is shown
const failures = new Map(); // source -> message

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function banner() {
  const b = document.getElementById("banner");
  if (failures.size === 0) {
    b.hidden = true;
    b.textContent = "";
    return;
  }
  b.hidden = false;
  b.textContent = [...failures.values()].join(" — ") + " (retrying)";
}

// GET an API path; a failure is shown in the banner and returns null.
async function api(path, source) {
  try {
    const r = await fetch(path, { cache: "no-store" });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) {
      const what = body.source || source;
      failures.set(what, `${labelOf(what)} unavailable: ${body.error || r.status}`);
      banner();
      return null;
    }
    failures.delete(source);
    if (source === "datastore" || source === "flows") failures.delete("console");
    banner();
    return body;
  } catch (e) {
    failures.set("console", `The console does not answer (${e.message})`);
    banner();
    return null;
  }
}

function labelOf(source) {
  return { datastore: "The datastore is", flows: "The flow API is", console: "The console is" }[source] || source;
}

function timeOf(secs) {
  return new Date(secs * 1000).toISOString().slice(11, 19);
}

function endName(e) {
  if (!e) return "";
  return e.namespace ? `${e.namespace}/${e.name}` : e.name;
}

function describe(h) {
  if (!h) return "";
  if (h.kind === "EndOfTier") {
    return h.tier === "__PROFILE__" ? "no policy or profile allowed" : `${h.tier}: end of tier`;
  }
  if (h.kind === "Profile") return `profile ${h.name} rule ${h.ruleIndex}`;
  const kinds = { CalicoNetworkPolicy: "NetworkPolicy", NetworkPolicy: "KubernetesNetworkPolicy" };
  const name = h.namespace ? `${h.namespace}/${h.name}` : h.name;
  return `${h.tier}: ${kinds[h.kind] || h.kind} ${name} rule ${h.ruleIndex}`;
}

// ---- Flows

function flowQuery() {
  const form = document.getElementById("flow-filters");
  const q = new URLSearchParams();
  for (const name of ["namespace", "endpoint", "action", "policy", "port"]) {
    const v = form.elements[name].value.trim();
    if (v) q.set(name, v);
  }
  q.set("last", "500");
  return q;
}

function flowKey(f) {
  return [f.startTime, endName(f.source), endName(f.destination), f.protocol, f.port, f.reporter, f.action].join("|");
}

async function loadFlows() {
  if (paused) return;
  const body = await api(`/api/flows?${flowQuery()}`, "flows");
  if (!body) return;
  const tbody = document.querySelector("#flows tbody");
  tbody.replaceChildren();
  for (const f of body.flows) {
    const pending = (f.pendingPolicies || []).find((h) => h.kind.startsWith("Staged"));
    const row = el("tr", { class: f.action === "deny" ? "deny" : "", "data-action": f.action },
      el("td", {}, timeOf(f.startTime)),
      el("td", {}, endName(f.source)),
      el("td", {}, endName(f.destination)),
      el("td", {}, f.protocol),
      el("td", { class: "num" }, f.port),
      el("td", { class: "reporter" }, f.reporter === "src" ? "source" : "destination"),
      el("td", { class: `action-${f.action}` }, f.action),
      el("td", { class: "policy" }, f.decidedBy),
      el("td", { class: "pending" }, pending ? `${describe(pending)} (${pending.action})` : "—"),
      el("td", { class: "num" }, `${f.packetsIn}/${f.packetsOut}`),
      el("td", { class: "num" }, `${f.bytesIn}/${f.bytesOut}`));
    if (selected && flowKey(f) === flowKey(selected)) row.classList.add("selected");
    row.addEventListener("click", () => showTrace(f, row));
    tbody.append(row);
  }
  document.getElementById("flow-count").textContent = `${body.flows.length} flows, newest first`;
}

// An end as `policy trace` takes it: an endpoint's ns/name, else its labels.
function traceEnd(e) {
  if (e.kind === "WorkloadEndpoint") return `${e.namespace}/${e.name}`;
  if (e.kind === "HostEndpoint") return e.name;
  return null;
}

async function showTrace(f, row) {
  selected = f;
  for (const r of document.querySelectorAll("#flows tr.selected")) r.classList.remove("selected");
  row.classList.add("selected");
  const box = document.getElementById("trace");
  box.hidden = false;
  box.scrollIntoView({ block: "start" });
  document.getElementById("trace-title").textContent =
    `Policy trace: ${endName(f.source)} → ${endName(f.destination)} ${f.protocol} ${f.port}`;
  const enforced = document.getElementById("trace-enforced");
  const pending = document.getElementById("trace-pending");
  const src = traceEnd(f.source), dst = traceEnd(f.destination);
  if (!src || !dst) {
    enforced.replaceChildren(el("p", { class: "muted" }, "A trace needs an endpoint at both ends; this flow has a network at one."));
    pending.replaceChildren();
    return;
  }
  const q = new URLSearchParams({ src, dst, protocol: f.protocol, port: String(f.port) });
  const r = await fetch(`/api/trace?${q}`);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    enforced.replaceChildren(el("p", { class: "problem" }, `No trace: ${body.error}`));
    pending.replaceChildren();
    return;
  }
  enforced.replaceChildren(renderTrace(body.enforced));
  pending.replaceChildren(body.staged ? renderTrace(body.pending) : el("p", { class: "muted" }, "No staged policies."));
  box.scrollIntoView({ block: "start" });
}

function renderTrace(t) {
  const out = el("div", {});
  for (const d of t.directions) {
    const box = el("div", { class: "direction" },
      el("h3", {}, `${d.direction} of ${d.endpoint || d.address}`));
    if (!d.reached) box.append(el("p", { class: "muted" }, "not reached"));
    let tier = undefined;
    let list = null;
    for (const p of d.policies) {
      if (p.tier !== tier) {
        tier = p.tier;
        box.append(el("div", { class: "muted" }, tier ? `tier ${tier}` : "profiles"));
        list = el("ul", {});
        box.append(list);
      }
      const rules = el("ul", {});
      for (const r of p.rules) {
        rules.append(el("li", { class: r.matched ? "matched" : "nomatch" },
          `rule ${r.index} (${r.action}): ${r.matched ? "matched" : "no match: " + (r.reason || "")}`));
      }
      const results = { allow: "allow", deny: "deny", pass: "pass (to the next tier)", noMatch: "no rule matched" };
      list.append(el("li", {}, `${p.kind} ${p.name}: ${results[p.result] || p.result}`, rules));
    }
    if (d.verdict) {
      box.append(el("div", { class: `verdict ${d.verdict}` }, `${d.verdict}: ${d.decidedBy || ""}`));
    }
    out.append(box);
  }
  out.append(el("p", { class: `verdict ${t.verdict}` }, `Verdict: ${t.verdict.toUpperCase()} (${t.reason})`));
  return out;
}

// ---- Policies

async function loadPolicies() {
  const body = await api("/api/policies", "datastore");
  if (!body) return;
  if (body.flowsError) {
    failures.set("flows", `The flow API is unavailable: ${body.flowsError}`);
  } else {
    failures.delete("flows");
  }
  banner();
  document.getElementById("policies-note").textContent =
    "Hits: the flows of the last hour (from flow logs) in which a rule of the policy matched; a denial at a tier's end counts for the tier, not for a policy.";
  const tiers = document.getElementById("tiers");
  tiers.replaceChildren();
  for (const t of body.tiers) {
    const order = t.order === null ? "no order" : `order ${t.order}`;
    tiers.append(el("div", { class: "tier" },
      el("h2", {}, `Tier ${t.name} (${order}, default action ${t.defaultAction})`),
      policyTable(t.policies)));
  }
  document.getElementById("staged").replaceChildren(
    body.staged.length ? policyTable(body.staged, true) : el("p", { class: "muted" }, "None."));
}

function policyTable(policies, staged) {
  const table = el("table", { class: "policies" },
    el("thead", {}, el("tr", {},
      el("th", { class: "num" }, "Order"), el("th", {}, "Policy"), el("th", {}, "Selector"),
      el("th", {}, "Selects"), el("th", { class: "num" }, staged ? "Pending flows" : "Flows"),
      el("th", { class: "num" }, "Connections"), el("th", { class: "num" }, "Allowed"),
      el("th", { class: "num" }, "Denied"), el("th", {}, "By rule"))));
  const tbody = el("tbody", {});
  for (const p of policies) {
    const h = p.hits;
    const name = p.namespace ? `${p.namespace}/${p.name}` : p.name;
    const rules = h ? Object.entries(h.rules).map(([i, n]) => (i === "-1" ? `end: ${n}` : `rule ${i}: ${n}`)).join(", ") : "—";
    tbody.append(el("tr", {},
      el("td", { class: "num" }, p.order === null ? "—" : p.order),
      el("td", {}, `${p.kind} ${name}`),
      el("td", { class: "wrap" }, p.selector),
      el("td", { class: "wrap" }, p.endpoints.length ? p.endpoints.join(", ") : "none"),
      el("td", { class: "num" }, h ? h.flows : "—"),
      el("td", { class: "num" }, h ? h.connections : "—"),
      el("td", { class: "num" }, h ? h.allowed : "—"),
      el("td", { class: "num" }, h ? h.denied : "—"),
      el("td", { class: "wrap" }, rules || "—")));
  }
  table.append(tbody);
  return table;
}

// ---- BGP

async function loadBgp() {
  const body = await api("/api/bgp", "datastore");
  if (!body) return;
  const summary = document.getElementById("bgp-summary");
  summary.replaceChildren(
    el("span", {}, `${body.nodes.length} nodes, ${body.sessions} sessions: `),
    el("span", { class: body.down ? "badge down" : "badge up" }, `${body.down} down`), " ",
    el("span", { class: body.silent ? "badge silent" : "badge up" }, `${body.silent} not reporting`));
  const nodes = document.getElementById("nodes");
  nodes.replaceChildren();
  for (const n of body.nodes) {
    const down = n.sessions.filter((s) => !s.up).length;
    const badge = n.stale
      ? el("span", { class: "badge silent" }, n.age === null ? "never reported" : `not reporting for ${n.age} s: felix down?`)
      : el("span", { class: down ? "badge down" : "badge up" }, down ? `${down} down` : "all up");
    const box = el("div", { class: n.stale ? "node silent" : "node", "data-node": n.node },
      el("h3", {}, n.node, badge));
    const table = el("table", {},
      el("thead", {}, el("tr", {},
        el("th", {}, "Peer"), el("th", {}, "Type"), el("th", {}, "State"), el("th", {}, "Since"),
        el("th", { class: "num" }, "Prefixes in/out"), el("th", {}, "Why down"))));
    const tbody = el("tbody", {});
    for (const s of n.sessions) {
      tbody.append(el("tr", { class: s.up ? "" : "down", "data-peer": s.peer },
        el("td", {}, s.peer), el("td", {}, s.peerType), el("td", {}, s.state),
        el("td", {}, s.since ? s.since.replace("T", " ").replace("Z", " UTC") : ""),
        el("td", { class: "num" }, `${s.prefixesIn}/${s.prefixesOut}`),
        el("td", { class: "wrap reason", title: s.lastError }, s.up ? "" : s.reason)));
    }
    if (!n.sessions.length) tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No sessions reported.")));
    table.append(tbody);
    box.append(table);
    nodes.append(box);
  }
}

// ---- IPAM

function bar(used, total) {
  const pct = total ? Math.min(100, (100 * used) / total) : 0;
  const b = el("span", { class: "bar", title: `${pct.toFixed(1)} %` }, el("span", {}));
  b.firstChild.style.width = `${pct}%`;
  return b;
}

async function loadIpam() {
  const body = await api("/api/ipam", "datastore");
  if (!body) return;
  const pools = document.querySelector("#pools tbody");
  const blocks = document.querySelector("#blocks tbody");
  pools.replaceChildren();
  blocks.replaceChildren();
  const rows = [];
  for (const p of body.usage.pools) {
    pools.append(el("tr", {},
      el("td", {}, p.name + (p.disabled ? " (disabled)" : "")), el("td", {}, p.cidr),
      el("td", { class: "num" }, p.blockSize), el("td", { class: "num" }, p.inUse),
      el("td", { class: "num" }, p.size), el("td", {}, bar(p.inUse, p.size))));
    for (const b of p.blocks) rows.push([b, p.name]);
  }
  for (const b of body.usage.orphanBlocks) rows.push([b, "(no pool)"]);
  rows.sort((a, b) => (a[0].host || "").localeCompare(b[0].host || "") || a[0].cidr.localeCompare(b[0].cidr));
  for (const [b, pool] of rows) {
    blocks.append(el("tr", {},
      el("td", {}, b.host || "(no affinity)"), el("td", {}, b.cidr), el("td", {}, pool),
      el("td", { class: "num" }, b.inUse), el("td", { class: "num" }, b.capacity),
      el("td", {}, bar(b.inUse, b.capacity))));
  }
  const borrowed = document.querySelector("#borrowed tbody");
  borrowed.replaceChildren();
  for (const a of body.borrowed) {
    borrowed.append(el("tr", {}, el("td", {}, a.ip), el("td", {}, a.block), el("td", {}, a.blockHost),
      el("td", {}, a.host), el("td", {}, a.handle || "")));
  }
  if (!body.borrowed.length) borrowed.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "None.")));
  const c = body.check;
  const check = document.getElementById("ipam-check");
  const problems = [];
  for (const l of c.leaked) problems.push(`leaked ${l.ip} in ${l.block} (handle ${l.handle || "none"}): ${JSON.stringify(l.reason)}`);
  for (const u of c.unallocated) problems.push(`${u.ip} of ${u.endpoint || "an endpoint"} has no allocation`);
  for (const h of c.handleProblems) problems.push(`handle ${h.handle}: ${JSON.stringify(h)}`);
  for (const a of c.affinityProblems) problems.push(`affinity: ${JSON.stringify(a)}`);
  for (const v of c.badValues) problems.push(`${v.key}: ${v.message}`);
  check.replaceChildren(
    el("p", {}, `${c.blocks} blocks, ${c.allocated} addresses allocated, ${c.handles} handles, ${c.workloadAddresses} workload addresses.`),
    problems.length
      ? el("ul", { class: "problem" }, ...problems.map((p) => el("li", {}, p)))
      : el("p", { class: "ok" }, "No leaks or inconsistencies (ipam check is clean)."));
}

// ---- Views and polling

const loaders = { flows: loadFlows, policies: loadPolicies, bgp: loadBgp, ipam: loadIpam };

async function refresh() {
  await loaders[view]();
  document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

function show(name) {
  view = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === name);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  history.replaceState(null, "", `#${name}`);
  refresh();
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
document.getElementById("pause").addEventListener("click", (e) => {
  paused = !paused;
  e.target.textContent = paused ? "Resume" : "Pause";
  if (!paused) refresh();
});
document.getElementById("flow-filters").addEventListener("input", () => { if (!paused) loadFlows(); });
document.getElementById("flow-filters").addEventListener("submit", (e) => e.preventDefault());

show(loaders[location.hash.slice(1)] ? location.hash.slice(1) : "flows");
setInterval(refresh, POLL_MS);
