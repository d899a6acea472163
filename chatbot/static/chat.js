// Resident chat page (/chat and /chat/embed). All data is inserted with DOM APIs as text;
// links are built only for http(s) URLs and phone numbers found in the text.
(function () {
  "use strict";
  var API = "/api/chat";
  var URL_RE = /(https?:\/\/[^\s<>"'）」]+)/g;
  var TEL_RE = /(0\d{1,4}-\d{1,4}-\d{3,4})/g;

  function sessionId() {
    var key = "niiza-chat-session";
    var v = null;
    try { v = sessionStorage.getItem(key); } catch (e) {}
    if (!v) {
      v = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
        : String(Date.now()) + Math.random().toString(16).slice(2);
      try { sessionStorage.setItem(key, v); } catch (e) {}
    }
    return v;
  }

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  // Append text to parent, turning URLs and phone numbers into links (never innerHTML).
  function appendLinkified(parent, text) {
    var lines = String(text || "").split(/\r?\n/);
    lines.forEach(function (line, i) {
      if (i > 0) parent.appendChild(document.createElement("br"));
      line.split(URL_RE).forEach(function (part, j) {
        if (j % 2 === 1) {
          var a = el("a", null, part);
          a.href = part;
          a.rel = "noopener noreferrer";
          a.target = "_blank";
          parent.appendChild(a);
          return;
        }
        part.split(TEL_RE).forEach(function (p, k) {
          if (k % 2 === 1) {
            var t = el("a", null, p);
            t.href = "tel:" + p;
            parent.appendChild(t);
          } else if (p) {
            parent.appendChild(document.createTextNode(p));
          }
        });
      });
    });
  }

  function telLink(number) {
    var a = el("a", "tel-link", number);
    a.href = "tel:" + String(number).replace(/[^\d+]/g, "");
    return a;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("chat");
    if (!root) return;
    var log = document.getElementById("chat-log");
    var form = document.getElementById("chat-form");
    var input = document.getElementById("chat-input");
    var send = document.getElementById("chat-send");
    var errorBox = document.getElementById("chat-error");
    var status = document.getElementById("chat-status");
    var maxChars = parseInt(root.getAttribute("data-max-chars") || "300", 10);
    var sid = sessionId();

    function setError(msg) { errorBox.textContent = msg || ""; }
    function scrollDown(node) { if (node && node.scrollIntoView) node.scrollIntoView({block: "nearest"}); }

    function addUser(text) {
      var p = el("p", "msg msg-user");
      p.appendChild(el("span", "visually-hidden", "あなたの質問："));
      p.appendChild(document.createTextNode(text));
      log.appendChild(p);
      scrollDown(p);
    }

    function contactLine(dept, contact) {
      var p = el("p", "answer-contact");
      if (!dept && !contact) return null;
      p.appendChild(document.createTextNode("お問い合わせ先：" + (dept || "")));
      if (contact) {
        p.appendChild(document.createTextNode(" 電話 "));
        p.appendChild(telLink(contact));
      }
      return p;
    }

    function feedbackButtons(faqId, logId) {
      var box = el("div", "feedback");
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", "この回答は役に立ちましたか");
      box.appendChild(el("span", "feedback-q", "この回答は役に立ちましたか？"));
      [[true, "役に立った"], [false, "役に立たなかった"]].forEach(function (pair) {
        var b = el("button", "button-secondary feedback-btn", pair[1]);
        b.type = "button";
        b.setAttribute("data-helpful", pair[0] ? "1" : "0");
        b.addEventListener("click", function () {
          var buttons = box.querySelectorAll("button");
          for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
          fetch(API + "/feedback", {
            method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
            body: JSON.stringify({session_id: sid, faq_id: faqId, helpful: pair[0], log_id: logId || null})
          }).then(function (r) {
            var thanks = el("p", "feedback-thanks", r.ok ? "ご協力ありがとうございました。" :
                            "送信できませんでした。時間をおいてお試しください。");
            box.appendChild(thanks);
            status.textContent = thanks.textContent;
          });
        });
        box.appendChild(b);
      });
      return box;
    }

    function candidateList(cands, label) {
      var wrap = el("div", "candidates");
      wrap.appendChild(el("p", "candidates-label", label));
      var ul = el("ul", "candidate-list");
      cands.forEach(function (c) {
        var li = el("li");
        var b = el("button", "candidate", c.question);
        b.type = "button";
        b.setAttribute("data-faq-id", c.faq_id);
        b.addEventListener("click", function () { showFaq(c.faq_id, c.question); });
        li.appendChild(b);
        ul.appendChild(li);
      });
      wrap.appendChild(ul);
      return wrap;
    }

    function addAnswer(res) {
      var box = el("div", "msg msg-bot");
      box.setAttribute("data-kind", res.kind || "");
      if (res.kind === "answer" && res.faq_id) {
        box.appendChild(el("p", "visually-hidden", "回答："));
        if (res.question) box.appendChild(el("p", "answer-question", res.question));
        var body = el("p", "answer-text");
        appendLinkified(body, res.answer);
        box.appendChild(body);
        if (res.url) {
          var more = el("p", "answer-url");
          var a = el("a", null, "詳しくは市のページをご覧ください");
          a.href = res.url; a.rel = "noopener noreferrer"; a.target = "_blank";
          more.appendChild(a);
          box.appendChild(more);
        }
        var c = contactLine(res.department, res.contact);
        if (c) box.appendChild(c);
        box.appendChild(feedbackButtons(res.faq_id, res.log_id));
        if (res.candidates && res.candidates.length) {
          box.appendChild(candidateList(res.candidates, "関連する質問"));
        }
      } else {
        var t = el("p", "answer-text");
        appendLinkified(t, res.answer);
        box.appendChild(t);
        if (res.candidates && res.candidates.length) {
          box.appendChild(candidateList(res.candidates, "もしかして："));
        }
        if (res.kind === "suggest") {
          var cl = contactLine(res.department, res.contact);
          if (cl) box.appendChild(cl);
        }
        if (res.kind === "out_of_scope") {
          var p = el("p", "answer-contact");
          p.appendChild(document.createTextNode((res.department || "市役所（代表）") + " 電話 "));
          p.appendChild(telLink(res.contact));
          box.appendChild(p);
        }
        box.appendChild(feedbackButtons(null, res.log_id));
      }
      log.appendChild(box);
      scrollDown(box);
      return box;
    }

    function showFaq(faqId, question) {
      setError("");
      addUser(question);
      fetch(API + "/faqs/" + encodeURIComponent(faqId), {credentials: "same-origin"})
        .then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          if (!rd[0].ok) { setError(rd[1].message || "表示できませんでした。"); return; }
          var f = rd[1];
          addAnswer({kind: "answer", faq_id: f.faq_id, question: f.question, answer: f.answer,
                     department: f.department, contact: f.contact, url: f.url, candidates: []});
        })
        .catch(function () { setError("通信できませんでした。時間をおいてお試しください。"); });
    }

    function ask(text) {
      setError("");
      addUser(text);
      send.disabled = true;
      status.textContent = "回答を探しています…";
      fetch(API + "/ask", {
        method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
        body: JSON.stringify({message: text, session_id: sid})
      }).then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          status.textContent = "";
          if (!rd[0].ok) { setError(rd[1].message || "エラーが発生しました。"); return; }
          addAnswer(rd[1]);
        })
        .catch(function () { setError("通信できませんでした。時間をおいてお試しください。"); })
        .then(function () { send.disabled = false; });
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (!text) { setError("質問を入力してください。"); input.focus(); return; }
      if (text.length > maxChars) { setError("質問は" + maxChars + "文字以内で入力してください。"); input.focus(); return; }
      input.value = "";
      ask(text);
      input.focus();
    });

    var chips = root.querySelectorAll(".chip");
    for (var i = 0; i < chips.length; i++) {
      chips[i].addEventListener("click", function (ev) {
        var cat = ev.currentTarget.getAttribute("data-category");
        setError("");
        fetch(API + "/faqs?category=" + encodeURIComponent(cat), {credentials: "same-origin"})
          .then(function (r) { return r.json(); })
          .then(function (list) {
            var box = el("div", "msg msg-bot");
            box.appendChild(el("p", "answer-text", "「" + cat + "」のよくある質問です。知りたい質問を選んでください。"));
            box.appendChild(candidateList(list, cat + "の質問一覧"));
            log.appendChild(box);
            scrollDown(box);
            var first = box.querySelector("button");
            if (first) first.focus();
          })
          .catch(function () { setError("通信できませんでした。時間をおいてお試しください。"); });
      });
    }
  });
})();
