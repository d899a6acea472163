// /minutes: upload with a progress bar, meeting list with job progress (polling).
(function () {
  var M = window.niizaMinutes;
  var API = "/api/minutes";
  var pollTimer = null;

  function progressCell(m) {
    var job = m.job;
    var cell = M.el("td", { className: "state-cell" });
    if (!job) return cell;
    var text = M.jobText(job);
    cell.appendChild(M.el("span", { className: "state state-" + job.state, text: text }));
    if (job.state === "running" || job.state === "queued") {
      cell.appendChild(M.el("progress", { max: "100", value: String(Math.round(job.progress || 0)),
        "aria-label": (m.title || "会議 " + m.id) + " の処理状況" }));
    }
    if (job.state === "failed" && job.error_message) {
      cell.appendChild(M.el("p", { className: "error small", text: job.error_message }));
    }
    return cell;
  }

  function actionsCell(m) {
    var cell = M.el("td", { className: "actions" });
    var name = m.title || "会議 " + m.id;
    cell.appendChild(M.el("a", { href: "/minutes/" + m.id, text: "開く", "aria-label": name + " を開く" }));
    var job = m.job;
    if (job && (job.state === "queued" || job.state === "running")) {
      cell.appendChild(M.el("button", { type: "button", className: "button-secondary", "data-action": "cancel",
        "data-id": m.id, text: "取り消し", "aria-label": name + " の文字起こしを取り消す" }));
    }
    if (job && (job.state === "failed" || job.state === "cancelled")) {
      cell.appendChild(M.el("button", { type: "button", className: "button-secondary", "data-action": "retry",
        "data-id": m.id, text: "再実行", "aria-label": name + " の文字起こしを再実行する" }));
    }
    cell.appendChild(M.el("button", { type: "button", className: "button-danger", "data-action": "delete",
      "data-id": m.id, text: "削除", "aria-label": name + " を削除する" }));
    return cell;
  }

  function render(meetings) {
    var tbody = document.getElementById("meeting-rows");
    var focusedAction = document.activeElement && document.activeElement.getAttribute("data-action");
    var focusedId = document.activeElement && document.activeElement.getAttribute("data-id");
    tbody.textContent = "";
    if (!meetings.length) {
      tbody.appendChild(M.el("tr", { className: "empty" }, [M.el("td", { colspan: "5", text: "まだ登録された会議はありません。" })]));
    }
    meetings.forEach(function (m) {
      var title = m.title || "会議 " + m.id;
      tbody.appendChild(M.el("tr", { "data-id": m.id, "data-state": m.job ? m.job.state : "" }, [
        M.el("td", {}, [M.el("a", { href: "/minutes/" + m.id, text: title })]),
        M.el("td", { text: m.held_at || "" }),
        M.el("td", { text: m.created_local || "" }),
        progressCell(m),
        actionsCell(m)
      ]));
    });
    if (focusedAction && focusedId) {
      var again = tbody.querySelector('[data-action="' + focusedAction + '"][data-id="' + focusedId + '"]');
      if (again) again.focus();
    }
  }

  function refresh() {
    return M.api("GET", API + "/meetings").then(function (data) {
      render(data.meetings);
      document.getElementById("list-error").textContent = "";
      var active = data.meetings.some(function (m) { return m.job && (m.job.state === "queued" || m.job.state === "running"); });
      schedule(active);
    }).catch(function (err) {
      document.getElementById("list-error").textContent = err.message;
      schedule(true);
    });
  }

  function schedule(active) {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = active ? setTimeout(refresh, 2000) : null;
  }

  function upload(ev) {
    ev.preventDefault();
    var form = document.getElementById("upload-form");
    var fileInput = document.getElementById("upload-file");
    var status = document.getElementById("upload-status");
    var error = document.getElementById("upload-error");
    var button = document.getElementById("upload-submit");
    status.textContent = ""; error.textContent = "";
    var file = fileInput.files && fileInput.files[0];
    if (!file) {
      error.textContent = "録音ファイルを選んでください。";
      fileInput.setAttribute("aria-invalid", "true");
      fileInput.focus();
      return;
    }
    fileInput.removeAttribute("aria-invalid");
    var max = parseInt(form.getAttribute("data-max-bytes"), 10);
    if (max && file.size > max) {
      error.textContent = "録音ファイルが大きすぎます（上限 " + form.getAttribute("data-max-label") + "）。";
      fileInput.focus();
      return;
    }
    var data = new FormData(form);
    var xhr = new XMLHttpRequest();
    var wrap = document.getElementById("upload-progress-wrap");
    var bar = document.getElementById("upload-progress");
    xhr.open("POST", API + "/meetings");
    xhr.setRequestHeader("X-CSRF-Token", M.csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total);
    });
    xhr.addEventListener("load", function () {
      wrap.hidden = true; button.disabled = false;
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) {}
      if (xhr.status === 201) {
        status.textContent = "登録しました。文字起こしを開始します（進捗は下の一覧に表示されます）。";
        form.reset();
        refresh();
      } else {
        error.textContent = body.message || ("登録できませんでした（" + xhr.status + "）。");
        fileInput.focus();
      }
    });
    xhr.addEventListener("error", function () {
      wrap.hidden = true; button.disabled = false;
      error.textContent = "送信できませんでした。ネットワークを確認してください。";
    });
    wrap.hidden = false; bar.value = 0; button.disabled = true;
    status.textContent = "送信しています…";
    xhr.send(data);
  }

  function onAction(ev) {
    var btn = ev.target.closest("button[data-action]");
    if (!btn) return;
    var id = btn.getAttribute("data-id");
    var action = btn.getAttribute("data-action");
    var listStatus = document.getElementById("list-status");
    var p;
    if (action === "delete") {
      if (!window.confirm("この会議の録音ファイルと文字起こしをすべて削除します。元に戻せません。よろしいですか。")) return;
      p = M.api("DELETE", API + "/meetings/" + id).then(function () { listStatus.textContent = "削除しました。"; });
    } else {
      p = M.api("POST", API + "/meetings/" + id + "/" + action).then(function () {
        listStatus.textContent = action === "cancel" ? "取り消しを受け付けました。" : "再実行を受け付けました。";
      });
    }
    p.then(refresh).catch(function (err) { document.getElementById("list-error").textContent = err.message; });
  }

  function loadGlossary() {
    M.api("GET", API + "/glossary").then(function (data) {
      document.getElementById("glossary-text").value = data.text;
      document.getElementById("glossary-status").textContent = "登録済み：" + data.entries + "件";
    }).catch(function (err) { document.getElementById("glossary-error").textContent = err.message; });
  }

  function saveGlossary(ev) {
    ev.preventDefault();
    var status = document.getElementById("glossary-status"), error = document.getElementById("glossary-error");
    status.textContent = ""; error.textContent = "";
    M.api("PUT", API + "/glossary", { text: document.getElementById("glossary-text").value }).then(function (data) {
      status.textContent = "用語登録を保存しました（" + data.entries + "件）。";
    }).catch(function (err) { error.textContent = err.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("glossary-form").addEventListener("submit", saveGlossary);
    document.getElementById("glossary-details").addEventListener("toggle", function (ev) {
      if (ev.target.open && !ev.target.getAttribute("data-loaded")) { ev.target.setAttribute("data-loaded", "1"); loadGlossary(); }
    });
    document.getElementById("upload-form").addEventListener("submit", upload);
    document.getElementById("meeting-rows").addEventListener("click", onAction);
    refresh();
  });
})();
