// Helpers shared by the minutes pages (no inline scripts: CSP script-src 'self').
window.niizaMinutes = (function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else if (k === "hidden") node.hidden = true;
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function hms(t) {
    t = Math.max(0, Math.floor(t || 0));
    var h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(h) + ":" + two(m) + ":" + two(s);
  }
  function eta(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return "残り約" + Math.max(1, Math.round(seconds)) + "秒";
    if (seconds < 3600) return "残り約" + Math.round(seconds / 60) + "分";
    return "残り約" + Math.floor(seconds / 3600) + "時間" + Math.round((seconds % 3600) / 60) + "分";
  }
  function jobText(job) {
    if (!job) return "";
    var text = job.state_label;
    if (job.state === "running" || job.state === "queued") {
      text += "（" + Math.round(job.progress || 0) + "%";
      if (job.stage_label && job.state === "running") text += "・" + job.stage_label;
      var e = eta(job.eta_s);
      if (e) text += "・" + e;
      text += "）";
    }
    return text;
  }
  // JSON API call; rejects with the server's Japanese message.
  function api(method, url, body) {
    var opts = { method: method, headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return window.niizaFetch(url, opts).then(function (r) {
      return r.text().then(function (t) {
        var data = {};
        try { data = t ? JSON.parse(t) : {}; } catch (e) { data = {}; }
        if (!r.ok) {
          var err = new Error(data.message || "エラーが発生しました（" + r.status + "）。");
          err.status = r.status; err.data = data;
          throw err;
        }
        return data;
      });
    });
  }
  // ISO time from the server (UTC) → "2026/11/29 9:16" in Japan time.
  function localTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return d.toLocaleString("ja-JP", { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit" });
  }
  return { csrf: csrf, el: el, hms: hms, eta: eta, jobText: jobText, api: api, localTime: localTime };
})();
