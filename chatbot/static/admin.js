// Staff FAQ page (/chat/admin). Uses the cookie session + CSRF header (niizaFetch from base.js).
// Everything from the server is inserted as text through DOM APIs.
(function () {
  "use strict";
  var API = "/api/chat/admin";
  var FIELDS = ["faq_id", "category", "question", "answer", "department", "contact", "url", "keywords"];
  var faqs = [];
  var editing = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, text) { var n = document.createElement(tag); if (text !== undefined) n.textContent = text; return n; }
  function status(msg) { $("admin-status").textContent = msg || ""; }
  function fail(msg) { $("admin-error").textContent = msg || ""; }

  function call(path, options) {
    return window.niizaFetch(API + path, options || {}).then(function (r) {
      var ct = r.headers.get("content-type") || "";
      var p = ct.indexOf("json") >= 0 ? r.json() : r.text();
      return p.then(function (d) {
        if (!r.ok) { var e = new Error((d && d.message) || "エラーが発生しました。"); e.data = d; throw e; }
        return d;
      });
    });
  }

  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }

  function loadDashboard() {
    return call("/dashboard").then(function (d) {
      var dl = $("dash-numbers");
      dl.textContent = "";
      [["質問数", d.questions], ["直接回答できた割合", Math.round(d.answered_share * 100) + "%"],
       ["役に立った", d.feedback.helpful], ["役に立たなかった", d.feedback.unhelpful], ["登録FAQ数", d.faqs]]
        .forEach(function (p) { dl.appendChild(el("dt", p[0])); dl.appendChild(el("dd", String(p[1]))); });
      var days = $("dash-days").querySelector("tbody");
      days.textContent = "";
      d.per_day.forEach(function (x) { days.appendChild(row([x.date, x.questions, x.answered])); });
      var top = $("dash-top").querySelector("tbody");
      top.textContent = "";
      d.top_faqs.forEach(function (x) { top.appendChild(row([x.faq_id, x.question, x.count])); });
    });
  }

  var REASONS = {unanswered: "対象外", suggested: "候補のみ", unhelpful: "役に立たなかった"};
  function loadReport() {
    return call("/report").then(function (groups) {
      var tb = $("report").querySelector("tbody");
      tb.textContent = "";
      if (!groups.length) { tb.appendChild(row(["（まだありません）", "", "", "", ""])); return; }
      groups.forEach(function (g) {
        var reasons = Object.keys(g.reasons).map(function (k) { return (REASONS[k] || k) + " " + g.reasons[k]; }).join("、");
        tb.appendChild(row([g.example, g.count, reasons, g.questions.join(" ／ "), g.faq_ids.join(", ")]));
      });
    });
  }

  function renderFaqs() {
    var q = $("faq-filter").value.trim();
    var tb = $("faq-table").querySelector("tbody");
    tb.textContent = "";
    faqs.filter(function (f) {
      return !q || (f.faq_id + f.category + f.question + f.department).indexOf(q) >= 0;
    }).forEach(function (f) {
      var b = el("button", "編集");
      b.type = "button";
      b.className = "button-secondary";
      b.setAttribute("aria-label", f.faq_id + " を編集");
      b.addEventListener("click", function () { edit(f.faq_id); });
      tb.appendChild(row([f.faq_id, f.category, f.question, f.department, b]));
    });
  }

  function loadFaqs() { return call("/faqs").then(function (list) { faqs = list; renderFaqs(); }); }

  function fillForm(f) {
    FIELDS.forEach(function (k) { $("f-" + k).value = f ? (f[k] || "") : ""; });
    $("f-faq_id").readOnly = !!f;
    $("faq-delete").hidden = !f;
    $("faq-form-title").textContent = f ? "FAQ " + f.faq_id + " を編集" : "FAQを追加";
  }

  function edit(id) {
    call("/faqs/" + encodeURIComponent(id)).then(function (d) {
      editing = id;
      fillForm(d.faq);
      var ol = $("faq-history");
      ol.textContent = "";
      d.history.forEach(function (h) {
        ol.appendChild(el("li", h.at + " 版" + h.version + " " + h.action + (h.actor ? "（" + h.actor + "）" : "")));
      });
      $("f-question").focus();
    }).catch(function (e) { fail(e.message); });
  }

  function loadSynonyms() {
    return call("/synonyms").then(function (list) {
      $("syn-text").value = list.map(function (s) { return s.term + "," + s.synonyms.join(";"); }).join("\n");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("faq-filter").addEventListener("input", renderFaqs);
    $("faq-new").addEventListener("click", function () { editing = null; fillForm(null); $("faq-history").textContent = ""; });
    $("faq-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      fail(""); status("");
      var body = {};
      FIELDS.forEach(function (k) { body[k] = $("f-" + k).value; });
      var path = editing ? "/faqs/" + encodeURIComponent(editing) : "/faqs";
      call(path, {method: editing ? "PUT" : "POST", headers: {"Content-Type": "application/json"},
                  body: JSON.stringify(body)})
        .then(function (f) { status("保存しました（" + f.faq_id + "）。"); editing = f.faq_id; return loadFaqs().then(function () { edit(f.faq_id); }); })
        .catch(function (e) {
          var d = e.data && e.data.details;
          fail(e.message + (Array.isArray(d) ? " " + d.map(function (x) { return x.message || ""; }).join(" ") : ""));
        });
    });
    $("faq-delete").addEventListener("click", function () {
      if (!editing || !window.confirm("FAQ " + editing + " を削除しますか？")) return;
      call("/faqs/" + encodeURIComponent(editing), {method: "DELETE"})
        .then(function () { status("削除しました。"); editing = null; fillForm(null); return loadFaqs(); })
        .catch(function (e) { fail(e.message); });
    });
    $("import-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      fail(""); status("");
      var list = $("import-errors");
      list.textContent = "";
      var fd = new FormData();
      var file = $("import-file").files[0];
      if (!file) { fail("ファイルを選んでください。"); return; }
      fd.append("file", file);
      fd.append("replace", $("import-replace").checked ? "true" : "false");
      status("取り込み中です…");
      call("/import", {method: "POST", body: fd})
        .then(function (r) { status("取り込みました：" + r.rows + "件（新規 " + r.created + "・更新 " + r.updated + "・削除 " + r.deleted + "）"); return loadFaqs(); })
        .catch(function (e) {
          status("");
          fail(e.message);
          ((e.data && e.data.details) || []).forEach(function (d) {
            list.appendChild(el("li", (d.line ? d.line + "行目 " : "") + (d.message || "")));
          });
        });
    });
    $("syn-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      fail(""); status("");
      var items = $("syn-text").value.split(/\r?\n/).map(function (line) {
        var i = line.indexOf(",");
        if (i < 0) i = line.indexOf("，");
        var term = (i < 0 ? line : line.slice(0, i)).trim();
        var syns = i < 0 ? [] : line.slice(i + 1).split(/[;；]/).map(function (s) { return s.trim(); }).filter(Boolean);
        return {term: term, synonyms: syns};
      }).filter(function (x) { return x.term; });
      call("/synonyms", {method: "PUT", headers: {"Content-Type": "application/json"}, body: JSON.stringify({items: items})})
        .then(function (list) { status("同義語表を保存しました（" + list.length + "語）。"); return loadSynonyms(); })
        .catch(function (e) { fail(e.message); });
    });
    Promise.all([loadDashboard(), loadReport(), loadFaqs(), loadSynonyms()])
      .catch(function (e) { fail(e.message); });
  });
})();
