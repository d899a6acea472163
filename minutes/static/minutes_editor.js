// /minutes/{id}: audio player + transcript (click to play, highlight), inline versioned edits,
// speakers (rename/merge), header, job progress (polling), version history, delete.
(function () {
  var M = window.niizaMinutes;
  var editor, id, API, player, pollTimer = null, lines = [], current = null;

  function $(sel) { return document.getElementById(sel); }

  // --- job progress --------------------------------------------------------------------------
  function showJob(job) {
    if (!job) return;
    editor.setAttribute("data-state", job.state);
    $("job-text").textContent = M.jobText(job) + (job.state === "done" ? "：文字起こしが完了しました。" : "");
    var bar = $("job-progress");
    bar.value = Math.round(job.progress || 0);
    bar.hidden = !(job.state === "queued" || job.state === "running");
    $("job-error").textContent = job.state === "failed" ? (job.error_message || "") : "";
    $("job-cancel").hidden = !(job.state === "queued" || job.state === "running");
    $("job-retry").hidden = !(job.state === "failed" || job.state === "cancelled");
    $("job-panel").hidden = false;
  }

  var lastSegment = -1;
  function poll() {
    M.api("GET", API + "/segments?after=" + lastSegment).then(function (data) {
      var job = data.job;
      showJob(job);
      var live = $("live-segments");
      data.segments.forEach(function (sg) {
        lastSegment = Math.max(lastSegment, sg.index);
        if (sg.dropped) return;
        live.appendChild(M.el("li", {}, [
          M.el("button", { type: "button", className: "utt-time", "data-play": String(sg.start),
            "aria-label": M.hms(sg.start) + " から再生", text: M.hms(sg.start) }),
          " " + sg.text]));
      });
      $("live-wrap").hidden = !(job && (job.state === "queued" || job.state === "running"));
      if (job && (job.state === "queued" || job.state === "running")) {
        pollTimer = setTimeout(poll, 2000);
      } else if (job && job.state === "done") {
        window.location.reload();
      }
    }).catch(function (err) {
      $("job-error").textContent = err.message;
      pollTimer = setTimeout(poll, 5000);
    });
  }

  function jobAction(action) {
    M.api("POST", API + "/" + action).then(function (data) {
      showJob(data.job);
      if (pollTimer) clearTimeout(pollTimer);
      poll();
    }).catch(function (err) { $("job-error").textContent = err.message; });
  }

  // --- playback ------------------------------------------------------------------------------
  function collectLines() {
    lines = Array.prototype.map.call(document.querySelectorAll("#transcript .utt"), function (li) {
      return { li: li, start: parseFloat(li.getAttribute("data-start")), end: parseFloat(li.getAttribute("data-end")) };
    });
  }

  function playFrom(t) {
    player.currentTime = Math.max(0, t);
    var p = player.play();
    if (p && p.catch) p.catch(function () {});
  }

  function highlight() {
    var t = player.currentTime, found = null;
    for (var i = 0; i < lines.length; i++) {
      var next = i + 1 < lines.length ? lines[i + 1].start : Infinity;
      if (t >= lines[i].start && t < Math.max(lines[i].end, Math.min(next, lines[i].end + 1.5))) { found = lines[i]; break; }
    }
    if (found === current) return;
    if (current) { current.li.classList.remove("playing"); current.li.removeAttribute("aria-current"); }
    current = found;
    if (current) {
      current.li.classList.add("playing");
      current.li.setAttribute("aria-current", "true");
      var editing = document.activeElement && document.activeElement.classList.contains("utt-text");
      if ($("follow-playback").checked && !editing) current.li.scrollIntoView({ block: "nearest" });
    }
  }

  // --- utterance edits -----------------------------------------------------------------------
  function lineOf(node) { return node.closest(".utt"); }

  function save(li) {
    var ta = li.querySelector(".utt-text");
    var msg = li.querySelector(".utt-msg");
    var btn = li.querySelector('[data-action="save"]');
    btn.disabled = true;
    msg.textContent = "保存しています…";
    M.api("PUT", API + "/utterances/" + li.getAttribute("data-id"),
          { text: ta.value, base_version: parseInt(li.getAttribute("data-version"), 10) })
      .then(function (data) {
        li.setAttribute("data-version", data.version);
        ta.value = data.text;
        ta.setAttribute("data-saved", data.text);
        li.querySelector(".utt-versions").textContent = "（" + data.version + "版）";
        msg.textContent = "保存しました（第" + data.version + "版）。";
        li.classList.remove("dirty");
        $("transcript-status").textContent = "発言を保存しました。";
      })
      .catch(function (err) {
        msg.textContent = err.message;
        msg.classList.add("error");
        btn.disabled = false;
      });
  }

  function onTranscriptClick(ev) {
    var btn = ev.target.closest("button[data-action]");
    if (!btn) {
      // a click on the line itself (not on its text box or buttons) plays from there as well
      var li = ev.target.closest(".utt");
      if (li && !ev.target.closest("textarea, button, a, input, label")) playFrom(parseFloat(li.getAttribute("data-start")));
      return;
    }
    var li = lineOf(btn);
    var action = btn.getAttribute("data-action");
    if (action === "play") playFrom(parseFloat(li.getAttribute("data-start")));
    else if (action === "save") save(li);
    else if (action === "history") openHistory(li, btn);
  }

  function onTranscriptInput(ev) {
    if (!ev.target.classList.contains("utt-text")) return;
    var li = lineOf(ev.target);
    var dirty = ev.target.value !== ev.target.getAttribute("data-saved");
    li.querySelector('[data-action="save"]').disabled = !dirty;
    li.classList.toggle("dirty", dirty);
    var msg = li.querySelector(".utt-msg");
    msg.classList.remove("error");
    msg.textContent = dirty ? "未保存の変更があります。" : "";
  }

  function onTranscriptKey(ev) {
    if (ev.target.classList.contains("utt-text") && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      var li = lineOf(ev.target);
      if (!li.querySelector('[data-action="save"]').disabled) save(li);
    }
  }

  // --- version history -----------------------------------------------------------------------
  var historyReturn = null;
  function openHistory(li, opener) {
    historyReturn = opener;
    var list = $("history-list");
    list.textContent = "";
    $("history-error").textContent = "";
    M.api("GET", API + "/utterances/" + li.getAttribute("data-id") + "/versions").then(function (data) {
      var currentVersion = parseInt(li.getAttribute("data-version"), 10);
      data.versions.forEach(function (v) {
        var source = v.source === "machine" ? "自動の文字起こし" : (v.source === "restore" ? "復元" : "編集");
        var meta = "第" + v.version + "版・" + source + "・" + M.localTime(v.created_at) +
          (v.author ? "・" + v.author : "") + (v.version === currentVersion ? "（現在の版）" : "");
        var item = M.el("li", { value: String(v.version), className: "history-item" }, [
          M.el("p", { className: "history-meta", text: meta }),
          M.el("p", { className: "history-text", text: v.text })
        ]);
        if (v.version !== currentVersion) {
          var b = M.el("button", { type: "button", className: "button-secondary", text: "この版に戻す",
            "aria-label": "第" + v.version + "版に戻す" });
          b.addEventListener("click", function () { restore(li, v.version); });
          item.appendChild(b);
        }
        list.appendChild(item);
      });
      var dlg = $("history-dialog");
      if (dlg.showModal) dlg.showModal(); else dlg.setAttribute("open", "");
      $("history-close").focus();
    }).catch(function (err) { li.querySelector(".utt-msg").textContent = err.message; });
  }

  function closeHistory() {
    var dlg = $("history-dialog");
    if (dlg.close) dlg.close(); else dlg.removeAttribute("open");
  }

  function restore(li, version) {
    M.api("POST", API + "/utterances/" + li.getAttribute("data-id") + "/restore", { version: version })
      .then(function (data) {
        var ta = li.querySelector(".utt-text");
        ta.value = data.text; ta.setAttribute("data-saved", data.text);
        li.setAttribute("data-version", data.version);
        li.querySelector(".utt-versions").textContent = "（" + data.version + "版）";
        li.querySelector('[data-action="save"]').disabled = true;
        li.querySelector(".utt-msg").textContent = "第" + version + "版の内容に戻しました（第" + data.version + "版）。";
        closeHistory();
      }).catch(function (err) { $("history-error").textContent = err.message; });
  }

  // --- speakers ------------------------------------------------------------------------------
  function renderSpeakers(speakers) {
    var list = $("speaker-list");
    list.textContent = "";
    var active = speakers.filter(function (s) { return s.merged_into === null; });
    var names = {};
    speakers.forEach(function (s) { names[s.id] = s.effective_name; });
    speakers.forEach(function (s) {
      var li;
      if (s.merged_into === null) {
        var inputId = "spk-" + s.id;
        var input = M.el("input", { type: "text", id: inputId, value: s.display_name, maxlength: "60", autocomplete: "off" });
        var btn = M.el("button", { type: "submit", className: "button-secondary", text: "名前を変更",
          "aria-label": s.display_name + " の名前を変更" });
        var form = M.el("form", { className: "speaker-form", "data-id": s.id }, [
          M.el("label", { "for": inputId, text: s.label + " の名前" }), input, btn]);
        form.addEventListener("submit", function (ev) {
          ev.preventDefault();
          speakerCall("PATCH", API + "/speakers/" + s.id, { display_name: input.value }, "話者名を変更しました。");
        });
        li = M.el("li", {}, [form]);
      } else {
        var un = M.el("button", { type: "button", className: "button-secondary", text: "統合を解除",
          "aria-label": s.display_name + " の統合を解除" });
        un.addEventListener("click", function () {
          speakerCall("POST", API + "/speakers/" + s.id + "/unmerge", undefined, "統合を解除しました。");
        });
        li = M.el("li", { className: "merged" }, [M.el("span", { text: s.display_name + " → " + s.effective_name + "（統合済み）" }), un]);
      }
      list.appendChild(li);
    });
    ["merge-source", "merge-target"].forEach(function (selId) {
      var sel = $(selId);
      sel.textContent = "";
      active.forEach(function (s) { sel.appendChild(M.el("option", { value: String(s.id), text: s.display_name })); });
    });
    if (active.length > 1) $("merge-target").selectedIndex = 1;
    $("merge-form").hidden = active.length < 2;
    // Update speaker names shown on the lines.
    var bySpeaker = {};
    speakers.forEach(function (s) { bySpeaker[s.label] = s; });
    document.querySelectorAll("#transcript .utt").forEach(function (li) {
      var sid = li.getAttribute("data-speaker-id");
      var raw = speakers.filter(function (s) { return String(s.id) === sid; })[0];
      if (raw) li.querySelector(".utt-speaker").textContent = raw.effective_name;
    });
  }

  function speakerCall(method, url, body, okText) {
    $("speaker-error").textContent = "";
    return M.api(method, url, body).then(function () {
      $("speaker-status").textContent = okText;
      return reloadDetail();
    }).catch(function (err) { $("speaker-error").textContent = err.message; });
  }

  function reloadDetail() {
    return M.api("GET", API).then(function (data) {
      // Map each line to its effective speaker after merges.
      var byId = {};
      data.utterances.forEach(function (u) { byId[u.id] = u; });
      document.querySelectorAll("#transcript .utt").forEach(function (li) {
        var u = byId[li.getAttribute("data-id")];
        if (u) {
          li.setAttribute("data-speaker-id", u.speaker_id === null ? "" : String(u.speaker_id));
          li.querySelector(".utt-speaker").textContent = u.speaker;
        }
      });
      renderSpeakers(data.speakers);
      var kp = $("key-points");
      kp.textContent = "";
      if (!data.key_points.length) kp.appendChild(M.el("li", { text: "（該当なし）" }));
      data.key_points.forEach(function (p) {
        kp.appendChild(M.el("li", {}, [
          M.el("button", { type: "button", className: "utt-time", "data-play": String(p.start),
            "aria-label": M.hms(p.start) + " から再生", text: M.hms(p.start) }),
          " 【" + p.kind + "】" + p.text + "（" + p.speaker + "）"]));
      });
    });
  }

  // --- header and delete ---------------------------------------------------------------------
  function saveHeader(ev) {
    ev.preventDefault();
    var body = {};
    ["title", "held_at", "place", "attendees", "agenda"].forEach(function (k) { body[k] = $("h-" + k).value; });
    $("header-status").textContent = ""; $("header-error").textContent = "";
    M.api("PATCH", API, body).then(function (data) {
      $("header-status").textContent = data.changed.length ? "会議の情報を保存しました。" : "変更はありません。";
      $("meeting-title").textContent = data.header.title || ("会議 " + id);
    }).catch(function (err) { $("header-error").textContent = err.message; });
  }

  function deleteMeeting() {
    if (!window.confirm("この会議の録音ファイルと文字起こしをすべて削除します。元に戻せません。よろしいですか。")) return;
    M.api("DELETE", API).then(function () { window.location.href = "/minutes"; })
      .catch(function (err) { $("delete-error").textContent = err.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    editor = $("editor");
    id = editor.getAttribute("data-id");
    API = "/api/minutes/meetings/" + id;
    player = $("player");
    collectLines();
    player.addEventListener("timeupdate", highlight);
    player.addEventListener("seeked", highlight);
    var transcript = $("transcript");
    transcript.addEventListener("click", onTranscriptClick);
    transcript.addEventListener("input", onTranscriptInput);
    transcript.addEventListener("keydown", onTranscriptKey);
    $("history-close").addEventListener("click", closeHistory);
    $("history-dialog").addEventListener("close", function () { if (historyReturn) historyReturn.focus(); });
    $("header-form").addEventListener("submit", saveHeader);
    $("merge-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      speakerCall("POST", API + "/speakers/merge", {
        source_id: parseInt($("merge-source").value, 10), target_id: parseInt($("merge-target").value, 10)
      }, "話者を統合しました。");
    });
    $("delete-meeting").addEventListener("click", deleteMeeting);
    $("show-raw").addEventListener("change", function (ev) { transcript.classList.toggle("show-raw", ev.target.checked); });
    document.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-play]");
      if (b) playFrom(parseFloat(b.getAttribute("data-play")));
    });
    $("job-cancel").addEventListener("click", function () { jobAction("cancel"); });
    $("job-retry").addEventListener("click", function () { jobAction("retry"); });
    window.addEventListener("beforeunload", function (ev) {
      if (document.querySelector("#transcript .utt.dirty")) { ev.preventDefault(); ev.returnValue = ""; }
    });
    reloadDetail().catch(function () {});
    var state = editor.getAttribute("data-state");
    if (state === "queued" || state === "running") poll();
  });
})();
