/**
 * The status page served at `/`: one HTML document with inline script and style, no build step.
 * It asks for a token (kept in the tab's sessionStorage, sent as a bearer header, never in a URL),
 * then shows the pipeline as columns of stages and apps as rows, holds and pending approvals, what
 * Argo CD reports per stage (a colour per state, whose sync a manual stage waits for, who started
 * the last operation), and
 * each stage's recent history, each update linked to the ops repo commit it wrote (shown in the
 * page from `/v1/history/<stage>/commits/<sha>`, and on the host's web page when it has one).
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gitops-stages</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }
  h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
  table { border-collapse: collapse; margin: .5rem 0; }
  th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
  th { background: #f6f8fa; }
  td.held { background: #fff8c5; } td.empty { color: #8c959f; }
  .badge { font-size: .75rem; border-radius: .6rem; padding: 0 .4rem; margin-left: .3rem; background: #ddf4ff; }
  .badge.hold { background: #ffebe9; } .badge.approval { background: #fbefff; }
  .badge.waiting { background: #fff8c5; } .op { font-size: .75rem; color: #57606a; }
  /* What Argo CD reports, as a colour: deployed green, applied but not Healthy yet pale green,
     waiting or syncing amber, failed red, unknown grey. */
  td.state-deployed { background: #dafbe1; } td.state-synced { background: #eefbf1; }
  td.state-pending, td.state-syncing { background: #fff8c5; } td.state-failed { background: #ffebe9; }
  td.state-unknown { background: #f6f8fa; color: #57606a; }
  #error { color: #cf222e; } form { margin: 1rem 0; }
  code { font-size: .85rem; } code.commit { color: #57606a; margin-left: .3rem; }
  #detail-text { background: #f6f8fa; padding: .6rem; overflow-x: auto; max-height: 40rem; }
</style>
</head>
<body>
<h1>gitops-stages: what runs where</h1>
<form id="login"><label>Token <input id="token" type="password" autocomplete="off" size="50"></label> <button type="submit">Show</button></form>
<p id="error" role="alert"></p>
<table id="pipeline" aria-label="pipeline"><thead></thead><tbody></tbody></table>
<div id="history"></div>
<div id="detail" hidden><h2 id="detail-title">Change</h2><p id="detail-links"></p><pre id="detail-text"></pre></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
async function api(path) {
  const token = sessionStorage.getItem("gitops-stages-token");
  const res = await fetch(path, { headers: { authorization: "Bearer " + token } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
  return body;
}
async function load() {
  $("error").textContent = "";
  try {
    const rows = await api("/v1/status");
    const stages = rows.map((r) => r.stage);
    const apps = [...new Set(rows.flatMap((r) => Object.keys(r.apps)))].sort();
    $("pipeline").tHead.innerHTML = "<tr><th>app</th>" + stages.map((s) => "<th>" + esc(s) + "</th>").join("") + "</tr>";
    $("pipeline").tBodies[0].innerHTML = apps.map((app) => "<tr><th>" + esc(app) + "</th>" + rows.map((r) => {
      const e = r.apps[app];
      if (!e) return '<td class="empty">-</td>';
      const hold = e.hold ? '<span class="badge hold" title="' + esc(e.hold.reason) + '">held by ' + esc(e.hold.by) + "</span>" : "";
      return '<td class="' + (e.hold ? "held" : "") + '" data-stage="' + esc(r.stage) + '" data-app="' + esc(app) + '">' + esc(e.version) + hold + "</td>";
    }).join("") + "</tr>").join("")
      // Desired above, deployed (what Argo CD reports) below.
      + '<tr class="deployed"><th>(deployed)</th>' + rows.map((r) => {
        const d = r.deployment || { state: "-", message: "" };
        // A manual stage's commit waits for its owners: the badge says whose sync it is.
        const waiting = d.waitingFor ? '<span class="badge waiting">waiting for a sync by ' + esc(d.waitingFor.join(", ")) + "</span>" : "";
        const op = d.operation ? '<div class="op">last operation ' + esc(d.operation) + (d.operationBy ? " by " + esc(d.operationBy) : "") + (d.operationFinishedAt ? " at " + esc(d.operationFinishedAt) : "") + "</div>" : "";
        // The state links to the stage's Application in Argo CD (its last operation, its resources).
        const state = r.argocdApp ? '<a href="' + esc(r.argocdApp) + '" rel="noopener">' + esc(d.state) + "</a>" : esc(d.state);
        return '<td class="state-' + esc(d.state) + '" title="' + esc(d.message) + '">' + state + waiting + op + "</td>";
      }).join("") + "</tr>";
    const parts = [];
    for (const stage of stages) {
      let history = [];
      try { history = await api("/v1/history/" + encodeURIComponent(stage)); } catch (e) { /* a stage never updated has no history yet */ }
      const items = history.slice(0, 10).map((h, i) => {
        const c = h.change;
        const what = c ? esc(c.kind + " " + c.app + (c.version ? " " + c.version : "")) + " by " + esc(c.requester) : esc(h.kind);
        const pending = h.result === "failed" && /approval/.test(h.message || "") ? '<span class="badge approval">pending approval</span>' : "";
        const commit = h.opsCommit ? ' <code class="commit">' + esc(h.opsCommit.slice(0, 12)) + "</code>" : "";
        return '<li><a href="#' + esc(stage) + "/" + esc(h.opsCommit || "update-" + i) + '" data-stage="' + esc(stage) + '" data-index="' + i + '">' + esc(h.startTime) + "</a> " + esc(h.result) + ": " + what + commit + pending + "</li>";
      });
      parts.push("<section><h2>" + esc(stage) + '</h2><ul class="history" data-stage="' + esc(stage) + '">' + (items.join("") || "<li>no updates yet</li>") + "</ul></section>");
      window["history_" + stage] = history;
    }
    $("history").innerHTML = parts.join("");
  } catch (e) { $("error").textContent = e.message; }
}
$("history").addEventListener("click", async (ev) => {
  const a = ev.target.closest("a[data-stage]");
  if (!a) return;
  ev.preventDefault();
  const stage = a.dataset.stage;
  const h = window["history_" + stage][Number(a.dataset.index)];
  $("detail").hidden = false;
  $("detail-links").innerHTML = h.opsCommitUrl ? '<a href="' + esc(h.opsCommitUrl) + '" rel="noopener">view the commit on the ops repo host</a>' : "";
  if (!h.opsCommit) {
    // An update that wrote no commit (a no-op, a failure): its update message is all there is.
    $("detail-title").textContent = "Update";
    $("detail-text").textContent = h.message;
    return;
  }
  $("detail-title").textContent = "Ops repo commit " + h.opsCommit;
  $("detail-text").textContent = "loading...";
  try {
    const c = await api("/v1/history/" + encodeURIComponent(stage) + "/commits/" + encodeURIComponent(h.opsCommit));
    $("detail-text").textContent = ["commit " + c.commit, "Author: " + c.author, "Date:   " + c.date, "", c.message.trimEnd(), "",
      ...c.files.map((f) => f.status + "\\t" + f.path), "", c.patch + (c.truncated ? "\\n(patch cut at the size limit)" : "")].join("\\n");
  } catch (e) { $("detail-text").textContent = e.message; }
});
$("login").addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("gitops-stages-token", $("token").value); $("token").value = ""; load(); });
if (sessionStorage.getItem("gitops-stages-token")) load();
</script>
</body>
</html>
`;
