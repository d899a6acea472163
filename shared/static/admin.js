// Staff user administration page (admin role). Uses niizaFetch (CSRF header) from base.js.
(function () {
  function show(text, isError) {
    var box = document.getElementById("admin-result");
    box.textContent = "";
    var p = document.createElement("p");
    p.className = isError ? "error" : "notice";
    p.textContent = text;
    box.appendChild(p);
    box.focus && box.setAttribute("tabindex", "-1");
  }
  function handle(resp) {
    return resp.json().then(function (body) {
      if (!resp.ok) throw new Error(body.message || "エラーが発生しました。");
      return body;
    });
  }
  function oneTime(body) {
    show(body.username + " さんの初回用パスワード: " + body.one_time_password +
         "（この表示は一度だけです。本人に安全な方法で伝えてください。）", false);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("add-user-form");
    if (form) form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      window.niizaFetch("/api/admin/users", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({username: form.username.value, role: form.role.value})
      }).then(handle).then(oneTime).catch(function (e) { show(e.message, true); });
    });
    document.querySelectorAll(".js-reset").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var name = btn.getAttribute("data-username");
        if (!window.confirm(name + " さんのパスワードを初期化しますか？")) return;
        window.niizaFetch("/api/admin/users/" + encodeURIComponent(name) + "/reset", {method: "POST"})
          .then(handle).then(oneTime).catch(function (e) { show(e.message, true); });
      });
    });
    document.querySelectorAll(".js-disable").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var name = btn.getAttribute("data-username");
        if (!window.confirm(name + " さんを無効にしますか？")) return;
        window.niizaFetch("/api/admin/users/" + encodeURIComponent(name) + "/disable", {method: "POST"})
          .then(handle).then(function () { show(name + " さんを無効にしました。", false); })
          .catch(function (e) { show(e.message, true); });
      });
    });
  });
})();
