/* OPUS web client: what makes the pages live. Everything works without it (a job page
 * then refreshes itself); with it:
 * - a job page follows its job by WAIT long-polls of the UWS resource and, when the job
 *   changes, redraws its job part in place (no reload);
 * - the elapsed time of a running job ticks;
 * - buttons of forms marked data-confirm ask first;
 * - the provenance graph fits the page's width. */
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function duration(seconds) {
    var total = Math.max(0, Math.floor(seconds));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    if (h) { return h + " h " + pad(m) + " min"; }
    if (m) { return m + " min " + pad(s) + " s"; }
    return s + " s";
  }

  function tick() {
    var nodes = document.querySelectorAll(".elapsed[data-since]");
    for (var i = 0; i < nodes.length; i++) {
      var since = Date.parse(nodes[i].getAttribute("data-since"));
      if (!isNaN(since)) { nodes[i].textContent = duration((Date.now() - since) / 1000); }
    }
  }

  function confirmations(root) {
    var forms = root.querySelectorAll("form[data-confirm]");
    for (var i = 0; i < forms.length; i++) {
      forms[i].addEventListener("submit", function (event) {
        if (!window.confirm(this.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    }
  }

  function delay(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  /* Follow the job of this page while it is active. */
  async function follow() {
    var failures = 0;
    for (;;) {
      var section = document.getElementById("job");
      if (!section || !section.getAttribute("data-wait")) { return; }
      var before = section.getAttribute("data-phase");
      var state;
      try {
        var answer = await fetch(section.getAttribute("data-wait"), {
          headers: { "Accept": "application/json" }, credentials: "same-origin",
          cache: "no-store" });
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        state = await answer.json();
        failures = 0;
      } catch (error) {
        failures += 1;
        var live = section.querySelector(".live");
        if (live) { live.classList.add("lost"); live.textContent = "● reconnecting"; }
        await delay(Math.min(30000, 1000 * Math.pow(2, failures)));
        continue;
      }
      var changed = state.phase !== before;
      await redraw(changed);
      var now = document.getElementById("job");
      if (changed && now && now.getAttribute("data-phase") === before) {
        await delay(2000);  /* the page did not follow (yet): do not spin */
      }
    }
  }

  /* Replace the job part of the page by the server's current rendering of it. */
  async function redraw(changed) {
    var page = document.getElementById("job").getAttribute("data-page");
    var answer = await fetch(page, { headers: { "Accept": "text/html" },
                                     credentials: "same-origin", cache: "no-store" });
    if (!answer.ok) { return; }
    var fresh = new DOMParser().parseFromString(await answer.text(), "text/html")
      .getElementById("job");
    var current = document.getElementById("job");
    if (!fresh || !current) { return; }
    if (!changed && fresh.getAttribute("data-phase") === current.getAttribute("data-phase")) {
      var quote = fresh.querySelector("#quote"), old = current.querySelector("#quote");
      if (quote && old) { old.replaceWith(document.importNode(quote, true)); }
      return;
    }
    var focused = document.activeElement && document.activeElement.id;
    var node = document.importNode(fresh, true);
    current.replaceWith(node);
    confirmations(node);
    tick();
    if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
  }

  /* The provenance graph: fitted to the page's width (a toggle shows it at its own size). */
  function fitGraph() {
    var object = document.getElementById("graph"), toggle = document.getElementById("graph-fit");
    if (!object || !toggle) { return; }
    function apply() {
      var doc = object.contentDocument;
      var svg = doc && doc.documentElement;
      if (!svg || svg.tagName.toLowerCase() !== "svg") { return; }
      if (!object.getAttribute("data-width")) {
        var box = svg.viewBox && svg.viewBox.baseVal;  /* graphviz: points, 96/72 px each */
        var rect = svg.getBoundingClientRect();
        object.setAttribute("data-width", box && box.width ? box.width * 4 / 3 : rect.width);
        object.setAttribute("data-height", box && box.height ? box.height * 4 / 3 : rect.height);
      }
      var width = +object.getAttribute("data-width"), height = +object.getAttribute("data-height");
      var room = object.parentNode.clientWidth - 20;
      var scale = toggle.getAttribute("aria-pressed") === "true" ? Math.min(1, room / width) : 1;
      svg.setAttribute("width", width * scale + "px");
      svg.setAttribute("height", height * scale + "px");
      object.style.width = width * scale + "px";
      object.style.height = height * scale + "px";
      toggle.hidden = width <= room;
    }
    object.addEventListener("load", apply);
    window.addEventListener("resize", apply);
    toggle.addEventListener("click", function () {
      toggle.setAttribute("aria-pressed", toggle.getAttribute("aria-pressed") === "true" ? "false" : "true");
      apply();
    });
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    fitGraph();
    confirmations(document);
    tick();
    setInterval(tick, 1000);
    follow();
  });
})();
