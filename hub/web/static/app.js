// The web view: draws the hub's JSON answers (the shapes in the README) as they arrive
// on the page's server-sent event stream, /ui/stream. It asks for nothing else: the hub
// pushes the fleet, the applications, the selected application's status and its events
// whenever they change, so there is no polling and no second copy of the state here.
// The DOM is built with textContent only: no answer is ever parsed as HTML.
"use strict";

const MAX_EVENTS = 200;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === "") continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function health(value, reason) {
  return el("span", { class: `health h-${value}`, title: reason || null, text: value });
}

function dim(text) {
  return text ? el("span", { class: "dim", text }) : null;
}

function ago(timestamp) {
  if (!timestamp) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(timestamp)) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit} ago`;
  }
  return `${seconds}s ago`;
}

function time(timestamp) {
  if (!timestamp) return el("span", { class: "dim", text: "-" });
  const shown = new Date(timestamp).toLocaleTimeString([], { hour12: false });
  return el("time", { datetime: timestamp, title: timestamp, text: shown });
}

function labels(map) {
  return Object.keys(map || {})
    .sort()
    .map((key) => el("span", { class: "label", text: `${key}=${map[key]}` }));
}

// the fleet

function renderFleet(answer) {
  const rows = answer.clusters.map((c) =>
    el(
      "tr",
      { "data-cluster": c.name },
      el("th", { scope: "row", text: c.name }),
      el("td", {}, labels(c.labels)),
      el("td", {}, health(c.health, c.reason), c.reason ? dim(` ${c.reason}`) : null),
      el(
        "td",
        {},
        el("span", { title: c.lastSeen || "", text: ago(c.lastSeen) }),
        c.watch.state === "synced" ? null : dim(` watch ${c.watch.state}`),
      ),
    ),
  );
  document.getElementById("clusters").replaceChildren(...rows);
  const prober = answer.prober;
  document.getElementById("prober").textContent = prober.running
    ? ""
    : `prober not running${prober.lastError ? `: ${prober.lastError}` : ""}`;
}

// the applications

function selected() {
  const match = /^#app=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function renderApps(answer) {
  const current = selected();
  const items = answer.applications.map((a) =>
    el(
      "li",
      {},
      el(
        "a",
        {
          href: `#app=${encodeURIComponent(a.name)}`,
          "aria-current": a.name === current ? "page" : null,
          "data-app": a.name,
        },
        el("span", { class: "app-name", text: a.name }),
        el("span", { class: "app-meta" }, `rev ${a.revision}`, a.publishVersion ? ` (${a.publishVersion})` : "", ` · ${a.phase} `),
        health(a.health),
      ),
    ),
  );
  document.getElementById("app-list").replaceChildren(...items);
  document.getElementById("no-apps").hidden = items.length > 0;
  if (current === null && answer.applications.length > 0) {
    location.replace(`#app=${encodeURIComponent(answer.applications[0].name)}`);
  }
}

// one application: the tree of `flotilla status --tree`

function renderStatus(status) {
  document.getElementById("app-title").textContent = status.name;
  const version = status.publishVersion ? ` (${status.publishVersion})` : "";
  document
    .getElementById("app-summary")
    .replaceChildren(
      `revision ${status.revision}${version} · `,
      el("span", { class: "phase", text: status.phase }),
      " ",
      health(status.health, status.reason),
      status.message ? dim(` ${status.message}`) : null,
    );
  const next = document.getElementById("next");
  next.hidden = !status.next;
  next.replaceChildren(...(status.next ? ["Next: ", el("code", { text: status.next })] : []));
  const steps = status.steps.map((step) => renderStep(step));
  document.getElementById("tree").replaceChildren(el("ul", { class: "steps" }, steps));
}

function renderAbsent(answer) {
  document.getElementById("app-title").textContent = selected() || "Select an application";
  document.getElementById("app-summary").textContent = answer.error;
  document.getElementById("next").hidden = true;
  document.getElementById("tree").replaceChildren();
}

function renderStep(step) {
  const line = el(
    "div",
    { class: "line" },
    el("span", { class: "kind", text: "step" }),
    el("strong", { text: step.name }),
    dim(`(${step.type})`),
    el("span", { class: "phase", text: step.phase }),
    step.type === "deploy" ? health(step.health, step.reason) : null,
    dim(step.message),
  );
  const global = step.analysis.filter((m) => m.component === null);
  const clusters = step.clusters.map((cluster) => renderCluster(step, cluster));
  return el(
    "li",
    { class: "step", "data-step": step.name },
    line,
    global.length ? measurements(global, true) : null,
    clusters.length ? el("ul", {}, clusters) : null,
  );
}

function renderCluster(step, cluster) {
  const line = el(
    "div",
    { class: "line" },
    el("span", { class: "kind", text: "cluster" }),
    el("strong", { text: cluster.name }),
    labels(cluster.labels),
    health(cluster.health, cluster.reason),
    cluster.reachable
      ? null
      : el("span", { class: "unreachable", text: `unreachable, last seen ${ago(cluster.lastSeen)}` }),
  );
  const releases = cluster.releases.map((release) => renderRelease(step, cluster, release));
  return el("li", { class: "cluster", "data-cluster": cluster.name }, line, el("ul", {}, releases));
}

function renderRelease(step, cluster, release) {
  const line = el(
    "div",
    { class: "line" },
    el("span", { class: "kind", text: "release" }),
    el("strong", { text: release.release }),
    dim(release.namespace),
    el("span", { text: release.chart }),
    el("span", { class: "phase", text: release.phase }),
    health(release.health, release.reason),
    dim(release.reason || release.message),
  );
  const measured = step.analysis.filter(
    (m) => m.cluster === cluster.name && m.component === release.component,
  );
  const objects = release.objects.map((o) =>
    el(
      "li",
      { class: "object" },
      el("span", { class: "kind", text: o.kind }),
      el("span", { text: o.namespace ? `${o.namespace}/${o.name}` : o.name }),
      health(o.health, o.reason),
      dim(o.reason),
      o.keep ? dim("resource-policy keep: prune and delete leave it") : null,
      o.drift ? renderDrift(o.drift) : null,
    ),
  );
  const hooks = (release.hooks || []).map(renderHook);
  const crds = release.crds || [];
  if (crds.length) {
    const names = crds.map((c) => c.name).join(", ");
    hooks.push(
      el(
        "li",
        { class: "crds" },
        el("span", { class: "kind", text: "crds/" }),
        dim(`${names}: ${crds[0].message}`),
      ),
    );
  }
  return el(
    "li",
    { class: "release", "data-component": release.component },
    line,
    release.rollout ? renderRollout(release.rollout) : null,
    measured.length ? measurements(measured, false) : null,
    objects.length ? el("ul", { class: "objects" }, objects) : null,
    hooks.length ? el("ul", { class: "hooks" }, hooks) : null,
  );
}

// The last run of one Helm hook, as the terminal's tree shows it: event, object, outcome,
// the revision that ran it, and why it failed.
function renderHook(run) {
  return el(
    "li",
    { class: "hook" },
    el("span", { class: "kind", text: `hook ${run.event}` }),
    el("span", { text: `${run.kind} ${run.namespace ? `${run.namespace}/${run.name}` : run.name}` }),
    el("span", { class: `hook-phase p-${run.phase}`, text: run.phase }),
    dim(`revision ${run.revision}`),
    dim(run.message),
  );
}

// An object that differs from what the hub applied: each field with its two values and who
// changed it, and what the hub does about it (healing, or why it leaves it).
function renderDrift(drift) {
  const what = drift.gone
    ? "deleted"
    : drift.fields
        .map((f) => {
          const by = f.manager ? ` by ${f.manager}` : "";
          return `${f.path}: ${JSON.stringify(f.live)} (applied ${JSON.stringify(f.applied)})${by}`;
        })
        .join("; ");
  return el(
    "span",
    { class: "drift", title: drift.action },
    el("span", { class: "out-of-sync", text: "OutOfSync" }),
    dim(` ${what}; ${drift.action}`),
  );
}

// The canary: its step, the traffic it takes (a bar: canary against stable) and how far
// its new pods have come (the rollout's `canary`, e.g. "1/2 new pods, 3/3 available").
function renderRollout(rollout) {
  const [step, steps] = rollout.step.split("/").map(Number);
  const share = rollout.weight;
  const traffic =
    share === null
      ? el("p", { class: "dim", text: "traffic by header matches" })
      : bar(share, `traffic: canary ${share}%, stable ${100 - share}%`, `canary ${share}%`, `stable ${100 - share}%`);
  const pods = /^(\d+)\/(\d+) new pods/.exec(rollout.canary || "");
  return el(
    "div",
    { class: "rollout" },
    el(
      "div",
      { class: "line" },
      el("span", { class: "kind canary", text: "canary" }),
      el("span", { text: rollout.workload }),
      el("span", { class: "step-of", text: `step ${rollout.step}` }),
      el("span", { class: "stage", text: rollout.stage }),
      rollout.resumeAt ? dim(`resumes at ${new Date(rollout.resumeAt).toLocaleTimeString()}`) : null,
    ),
    el(
      "div",
      { class: "steps-bar", role: "img", "aria-label": `canary step ${step} of ${steps}` },
      Array.from({ length: steps }, (_, i) => el("span", { class: i < step ? "done" : "" })),
    ),
    traffic,
    pods
      ? bar(
          (100 * Math.min(Number(pods[1]), Number(pods[2]))) / Math.max(Number(pods[2]), 1),
          `canary pods: ${rollout.canary}`,
          `pods ${rollout.canary}`,
          "",
        )
      : dim(rollout.canary),
  );
}

function bar(percent, description, canaryText, stableText) {
  const canary = el("span", { class: "bar-canary" });
  canary.style.width = `${percent}%`; // CSSOM: allowed by the page's style-src 'self'
  return el(
    "div",
    { class: "bar-row" },
    el("div", { class: "bar", role: "img", "aria-label": description }, canary),
    el("span", { class: "bar-legend" }, el("span", { class: "c", text: canaryText }), stableText ? " · " : "", stableText),
  );
}

function measurements(list, withCluster) {
  const head = ["metric", "value", "condition", "outcome", "verdict", "passes", "failures", "errors", "at"];
  if (withCluster) head.unshift("cluster");
  const rows = list.map((m) =>
    el(
      "tr",
      { title: m.message || null },
      withCluster ? el("td", { text: m.cluster || "(global)" }) : null,
      el("td", {}, el("span", { class: "kind", text: "analysis" }), " ", m.metric),
      el("td", { class: "num", text: m.value === null ? "no value" : Number(m.value).toPrecision(4) }),
      el("td", {}, el("code", { text: m.condition })),
      el("td", {}, el("span", { class: `outcome o-${m.outcome}`, text: m.outcome })),
      el("td", {}, el("span", { class: `verdict v-${m.verdict}`, text: m.verdict })),
      el("td", { class: "num", text: m.passes }),
      el("td", { class: "num", text: m.failures }),
      el("td", { class: "num", text: m.errors }),
      el("td", {}, time(m.at)),
    ),
  );
  return el(
    "table",
    { class: "analysis" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows),
  );
}

// events, newest first

function addEvent(event) {
  const list = document.getElementById("event-list");
  const where = [selected() ? null : event.app, event.step, event.cluster].filter(Boolean);
  list.prepend(
    el(
      "li",
      { "data-id": event.id },
      time(event.at),
      where.length ? el("span", { class: "where", text: where.join(" · ") }) : null,
      el("span", { class: "message", text: event.message }),
    ),
  );
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

// the stream

let source = null;

function setLive(text, state, link) {
  const live = document.getElementById("live");
  live.className = `live ${state}`;
  live.replaceChildren(text, link ? el("a", { href: "/signin", text: " Sign in again" }) : "");
}

function connect() {
  if (source) source.close();
  const name = selected();
  document.getElementById("event-list").replaceChildren();
  document.querySelectorAll("#app-list a").forEach((a) => {
    if (a.dataset.app === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (name === null) {
    document.getElementById("app-title").textContent = "Select an application";
  }
  source = new EventSource(`/ui/stream${name ? `?app=${encodeURIComponent(name)}` : ""}`);
  const on = (kind, draw) => source.addEventListener(kind, (e) => draw(JSON.parse(e.data)));
  on("clusters", renderFleet);
  on("apps", renderApps);
  on("status", renderStatus);
  on("absent", renderAbsent);
  on("event", addEvent);
  source.onopen = () => setLive("live", "ok");
  source.onerror = () => {
    // A closed EventSource does not retry: the hub refused the stream (a hub restarted
    // since has a new token, and ended every session). Anything else it retries itself.
    if (source.readyState === EventSource.CLOSED) {
      setLive("disconnected: the hub ended this session.", "down", true);
    } else {
      setLive("reconnecting…", "wait");
    }
  };
}

window.addEventListener("hashchange", connect);
connect();
