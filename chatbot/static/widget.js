// Embeddable launcher for the city's website:
//   <script src="https://AI-SERVER/static/chatbot/widget.js" data-city="新座市" defer></script>
// Adds a "質問する" button; it opens the chat (/chat/embed) in an iframe panel.
(function () {
  "use strict";
  var me = document.currentScript;
  var base = me && me.src ? me.src.replace(/\/static\/chatbot\/widget\.js.*$/, "") : "";
  function init() {
    if (document.getElementById("niiza-chat-launcher")) return;
    var btn = document.createElement("button");
    btn.id = "niiza-chat-launcher";
    btn.type = "button";
    btn.textContent = "AIチャットで質問する";
    btn.setAttribute("aria-expanded", "false");
    btn.setAttribute("aria-controls", "niiza-chat-panel");
    var s = btn.style;
    s.position = "fixed"; s.right = "1rem"; s.bottom = "1rem"; s.zIndex = "2147483000";
    s.font = "bold 1rem sans-serif"; s.padding = ".75rem 1rem"; s.minHeight = "2.75rem";
    s.background = "#0b5394"; s.color = "#fff"; s.border = "2px solid #fff"; s.borderRadius = "2rem";
    s.cursor = "pointer"; s.boxShadow = "0 2px 6px rgba(0,0,0,.4)";
    var panel = document.createElement("div");
    panel.id = "niiza-chat-panel";
    panel.hidden = true;
    var ps = panel.style;
    ps.position = "fixed"; ps.right = "1rem"; ps.bottom = "4.5rem"; ps.zIndex = "2147483000";
    ps.width = "min(26rem, calc(100vw - 2rem))"; ps.height = "min(40rem, calc(100vh - 6rem))";
    ps.boxShadow = "0 2px 12px rgba(0,0,0,.4)"; ps.background = "#fff"; ps.borderRadius = ".5rem";
    var frame = document.createElement("iframe");
    var city = (me && me.getAttribute("data-city")) || "";
    frame.title = (city ? city + " " : "") + "AIチャットボット";
    frame.src = base + "/chat/embed";
    frame.style.width = "100%"; frame.style.height = "100%"; frame.style.border = "0";
    panel.appendChild(frame);
    btn.addEventListener("click", function () {
      var open = panel.hidden;
      panel.hidden = !open;
      btn.setAttribute("aria-expanded", open ? "true" : "false");
      btn.textContent = open ? "チャットを閉じる" : "AIチャットで質問する";
      if (open) frame.focus();
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && !panel.hidden) { btn.click(); btn.focus(); }
    });
    document.body.appendChild(panel);
    document.body.appendChild(btn);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
