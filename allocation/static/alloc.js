// Allocation pages: upload → run → progress → summary; explanations and comparison (no inline scripts).
(function () {
  function $(id) { return document.getElementById(id); }
  function text(node, value) { node.textContent = value; }

  function showErrors(box, data) {
    box.textContent = "";
    var p = document.createElement("p");
    p.textContent = (data && data.message) || "エラーが発生しました。";
    box.appendChild(p);
    var details = (data && data.details) || [];
    if (Array.isArray(details) && details.length) {
      var ul = document.createElement("ul");
      ul.className = "alloc-errors";
      details.slice(0, 200).forEach(function (d) {
        var li = document.createElement("li");
        if (d && typeof d === "object" && "message" in d) {
          var where = (d.file || "") + (d.row ? " " + d.row + "行目" : "") + (d.column ? " 列「" + d.column + "」" : "");
          li.textContent = where + ": " + d.message;
        } else {
          li.textContent = typeof d === "string" ? d : JSON.stringify(d);
        }
        ul.appendChild(li);
      });
      box.appendChild(ul);
      if (details.length > 200) {
        var more = document.createElement("p");
        more.textContent = "ほか " + (details.length - 200) + " 件";
        box.appendChild(more);
      }
    }
  }

  function startRun(roundId, status, errorBox) {
    text(status, "計算を開始しています…");
    return niizaFetch("/api/allocation/rounds/" + roundId + "/runs", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { text(status, ""); showErrors(errorBox, data); return; }
        window.location.href = "/allocation/runs/" + data.id;
      });
    });
  }

  function initIndex() {
    var form = $("alloc-upload-form");
    if (!form) return;
    var status = $("alloc-upload-status"), errorBox = $("alloc-upload-error");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      errorBox.textContent = "";
      if (!$("alloc-applicants").files.length || !$("alloc-nurseries").files.length) {
        showErrors(errorBox, {message: "申込者と施設のファイルを選んでください。"});
        return;
      }
      var btn = $("alloc-upload-submit");
      btn.disabled = true;
      text(status, "ファイルを検証しています…");
      niizaFetch("/api/allocation/rounds", {method: "POST", body: new FormData(form)}).then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) { text(status, ""); showErrors(errorBox, data); btn.disabled = false; return; }
          text(status, "登録しました（申込 " + data.applicants + " 件、施設 " + data.nurseries + " 件）。");
          return startRun(data.id, status, errorBox);
        });
      }).catch(function () {
        text(status, ""); btn.disabled = false;
        showErrors(errorBox, {message: "サーバーに接続できませんでした。"});
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".alloc-delete-button"), function (b) {
      b.addEventListener("click", function () {
        var id = b.getAttribute("data-round-id");
        if (!window.confirm("選考データ " + id + " を、ファイル・計算結果・比較とともに削除します。よろしいですか。")) return;
        niizaFetch("/api/allocation/rounds/" + id, {method: "DELETE"}).then(function (r) {
          if (r.status === 204) { window.location.reload(); return; }
          return r.json().then(function (d) { showErrors(errorBox, d); });
        });
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".alloc-run-button"), function (b) {
      b.addEventListener("click", function () {
        b.disabled = true;
        startRun(b.getAttribute("data-round-id"), status, errorBox);
      });
    });
  }

  function poll(runId) {
    niizaFetch("/api/allocation/runs/" + runId).then(function (r) { return r.json(); }).then(function (run) {
      var bar = $("alloc-progress"), stage = $("alloc-stage");
      if (bar) bar.value = Math.round((run.progress || 0) * 100);
      if (stage) text(stage, run.stage || "");
      if (run.state === "done" || run.state === "failed") { window.location.reload(); return; }
      setTimeout(function () { poll(runId); }, 1000);
    }).catch(function () { setTimeout(function () { poll(runId); }, 3000); });
  }

  function initRun() {
    var root = $("alloc-run");
    if (!root) return;
    var runId = root.getAttribute("data-run-id");
    var state = root.getAttribute("data-state");
    if (state === "queued" || state === "running") poll(runId);
    var ef = $("alloc-explain-form");
    if (ef) ef.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = $("alloc-explain-out");
      var id = $("alloc-explain-id").value.trim();
      if (!id) { text(out, "申込番号を入力してください。"); return; }
      niizaFetch("/api/allocation/runs/" + runId + "/results?applicant_id=" + encodeURIComponent(id))
        .then(function (r) { return r.json(); }).then(function (data) {
          out.textContent = "";
          if (!data.items || !data.items.length) { text(out, "申込番号「" + id + "」は見つかりません。"); return; }
          var it = data.items[0];
          var h = document.createElement("p");
          h.textContent = it.applicant_id + "：" + (it.nursery_id || "保留") + "（優先順位 " + it.priority_rank + " 位）";
          var pre = document.createElement("div");
          pre.className = "alloc-explain-text";
          pre.textContent = it.explanation;
          out.appendChild(h); out.appendChild(pre);
        });
    });
    var cf = $("alloc-compare-form");
    if (cf) cf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = $("alloc-compare-out");
      if (!$("alloc-manual").files.length) { showErrors(out, {message: "手作業の結果ファイルを選んでください。"}); return; }
      text(out, "比較しています…");
      niizaFetch("/api/allocation/runs/" + runId + "/compare", {method: "POST", body: new FormData(cf)})
        .then(function (r) {
          return r.json().then(function (d) {
            if (!r.ok) { showErrors(out, d); return; }
            out.textContent = "";
            var lines = [
              "一致率 " + d.agreement_pct + "%（異なる " + d.differences + " 人）",
              "入所決定：ツール " + d.tool.placed + " ／ 手作業 " + d.manual.placed,
              "優先順位の逆転：ツール " + d.tool.blocking_coalitions + " ／ 手作業 " + d.manual.blocking_coalitions,
              "ルール違反：ツール " + d.tool.violations + " ／ 手作業 " + d.manual.violations,
              "希望者がいるのに空いている席：ツール " + d.tool.empty_seats_wanted + " ／ 手作業 " + d.manual.empty_seats_wanted
            ];
            var ul = document.createElement("ul");
            lines.forEach(function (l) { var li = document.createElement("li"); li.textContent = l; ul.appendChild(li); });
            out.appendChild(ul);
            var a = document.createElement("a");
            a.href = d.report_url; a.textContent = "比較報告書（HTML）をダウンロード"; a.setAttribute("download", "");
            out.appendChild(a);
          });
        });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { initIndex(); initRun(); });
})();
