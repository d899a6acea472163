// Text-size toggle (remembered per browser) shared by every page.
(function () {
  var KEY = "niiza-large-text";
  function apply(on) {
    document.documentElement.classList.toggle("large-text", on);
    var btn = document.getElementById("text-size-toggle");
    if (btn) {
      btn.setAttribute("aria-pressed", on ? "true" : "false");
      btn.textContent = on ? "文字を標準に戻す" : "文字を大きくする";
    }
  }
  var stored = false;
  try { stored = localStorage.getItem(KEY) === "1"; } catch (e) {}
  document.addEventListener("DOMContentLoaded", function () {
    apply(stored);
    var btn = document.getElementById("text-size-toggle");
    if (btn) btn.addEventListener("click", function () {
      stored = !stored;
      try { localStorage.setItem(KEY, stored ? "1" : "0"); } catch (e) {}
      apply(stored);
    });
  });
})();
// Helper for pages: fetch with the CSRF header for cookie sessions.
window.niizaFetch = function (url, options) {
  options = options || {};
  options.headers = options.headers || {};
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) options.headers["X-CSRF-Token"] = meta.content;
  options.credentials = "same-origin";
  return fetch(url, options);
};
