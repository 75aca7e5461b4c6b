// Live parts of the dashboard: one EventSource on /events; every update re-renders the
// queue totals and the running table and patches the recent-jobs rows that changed.
// Values are written with textContent only (never innerHTML): job data is untrusted.
"use strict";
(function () {
  const body = document.body;
  const jobPage = body.dataset.job;
  if (!body.dataset.live && !jobPage) return;
  const state = document.getElementById("live-state");
  const query = new URLSearchParams();
  if (body.dataset.cursor) query.set("after", body.dataset.cursor);
  if (jobPage) query.set("job", jobPage);
  const search = query.toString();
  const source = new EventSource("/events" + (search ? "?" + search : ""));
  window.imagenUpdates = 0;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function link(td, id) {
    const a = document.createElement("a");
    a.href = "/jobs/" + id;
    a.textContent = id.slice(0, 8);
    td.appendChild(a);
  }
  function progressText(j) {
    return j.status === "running" && j.progress_total ? j.progress_step + "/" + j.progress_total : "";
  }

  function renderQueue(queue) {
    const tbody = document.querySelector("#queue tbody");
    if (!tbody) return;
    const statuses = ["pending", "running", "done", "failed", "cancelled"];
    tbody.replaceChildren();
    for (const b of queue.backends) {
      const tr = document.createElement("tr");
      cell(tr, b);
      for (const s of statuses) cell(tr, String(queue.rows[b][s] || 0), "num");
      tbody.appendChild(tr);
    }
    const total = document.createElement("tr");
    total.className = "total";
    cell(total, "all");
    for (const s of statuses) cell(total, String(queue.totals[s]), "num").dataset.total = s;
    tbody.appendChild(total);
  }

  function renderRunning(running) {
    const tbody = document.querySelector("#running tbody");
    if (!tbody) return;
    tbody.replaceChildren();
    for (const r of running) {
      const tr = document.createElement("tr");
      tr.dataset.job = r.id;
      link(cell(tr, ""), r.id);
      cell(tr, r.backend);
      cell(tr, r.worker_id || "-");
      cell(tr, r.attempts + "/" + r.max_attempts);
      const td = cell(tr, "");
      if (progressText(r)) {
        const bar = document.createElement("progress");
        bar.max = r.progress_total;
        bar.value = r.progress_step || 0;
        td.appendChild(bar);
        td.appendChild(document.createTextNode(" " + progressText(r)));
      } else {
        td.textContent = "-";
      }
      cell(tr, r.prompt);
      tbody.appendChild(tr);
    }
  }

  function patchRecent(changed) {
    const tbody = document.querySelector("#recent tbody");
    if (!tbody) return;
    for (const j of changed) {
      let tr = tbody.querySelector('tr[data-job="' + CSS.escape(j.id) + '"]');
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.job = j.id;
        link(cell(tr, ""), j.id);
        cell(tr, "", "status");
        cell(tr, j.backend);
        cell(tr, "");
        cell(tr, "", "progress");
        cell(tr, j.prompt);
        cell(tr, "", "err");
      }
      const tds = tr.children;
      tds[1].textContent = j.status;
      tds[1].className = "status status-" + j.status;
      tds[3].textContent = j.attempts + "/" + j.max_attempts;
      tds[4].textContent = progressText(j);
      tds[6].textContent = j.error || "";
      tbody.prepend(tr);
    }
  }

  function patchJob(j) {
    if (!j || j.id !== jobPage) return;
    const status = document.getElementById("job-status");
    if (status) {
      status.textContent = j.status;
      status.className = "status status-" + j.status;
    }
  }

  source.addEventListener("update", function (message) {
    const update = JSON.parse(message.data);
    window.imagenUpdates += 1;
    if (jobPage) {
      patchJob(update.job);
    } else {
      renderQueue(update.queue);
      renderRunning(update.running);
      patchRecent(update.changed);
    }
    if (state) state.textContent = "live";
  });
  source.addEventListener("error", function () {
    if (state) state.textContent = "reconnecting…";
  });
})();
