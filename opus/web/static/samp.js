/* OPUS web client: "Send to SAMP" buttons, through the SAMP 1.3 Web Profile (section 5).
 *
 * A button carries data-samp-mtype (image.load.fits, table.load.votable), data-samp-url
 * (the result's URL, fetched by the receiving application) and data-samp-name. On the first
 * click the page registers with the hub (samp.webhub.register; the hub asks the user to
 * allow it) and declares its metadata; each click sends samp.webhub.notifyAll. The private
 * key is kept for the browser tab (sessionStorage), so the user is asked once, and a key the
 * hub no longer knows (it restarted) is replaced once. XML-RPC (the Web Profile's
 * transport) is written and read here: strings, structs and arrays are all
 * SAMP uses. The buttons stay hidden without this script. */
(function () {
  "use strict";

  var KEY = "opus.samp.private-key";
  var memory = {};  /* where the key lives if the tab has no sessionStorage */

  function stored(value) {  /* read (no argument), write (a key) or forget (null) */
    try {
      if (value === undefined) { return sessionStorage.getItem(KEY); }
      if (value === null) { sessionStorage.removeItem(KEY); } else { sessionStorage.setItem(KEY, value); }
    } catch (error) {
      if (value === undefined) { return memory.key || null; }
      memory.key = value;
    }
    return null;
  }

  function hubUrl() {
    var meta = document.querySelector('meta[name="samp-hub"]');
    return (meta && meta.content) || "http://localhost:21012/";
  }

  function escapeXml(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function encode(value) {
    if (Array.isArray(value)) {
      return "<value><array><data>" + value.map(encode).join("") + "</data></array></value>";
    }
    if (value !== null && typeof value === "object") {
      return "<value><struct>" + Object.keys(value).map(function (name) {
        return "<member><name>" + escapeXml(name) + "</name>" + encode(value[name]) + "</member>";
      }).join("") + "</struct></value>";
    }
    return "<value><string>" + escapeXml(value) + "</string></value>";
  }

  function elements(node) {
    var found = [];
    for (var child = node.firstChild; child; child = child.nextSibling) {
      if (child.nodeType === 1) { found.push(child); }
    }
    return found;
  }

  function decode(valueNode) {
    var typed = elements(valueNode)[0];
    if (!typed) { return valueNode.textContent; }  /* no type element: a string */
    switch (typed.localName) {
      case "array":
        var data = elements(typed)[0];
        return data ? elements(data).map(decode) : [];
      case "struct":
        var result = {};
        elements(typed).forEach(function (member) {
          var name = "", value = null;
          elements(member).forEach(function (part) {
            if (part.localName === "name") { name = part.textContent; }
            if (part.localName === "value") { value = decode(part); }
          });
          result[name] = value;
        });
        return result;
      case "int": case "i4": case "double": return Number(typed.textContent);
      case "boolean": return typed.textContent.trim() === "1";
      default: return typed.textContent;
    }
  }

  async function call(method, params) {
    var body = '<?xml version="1.0"?><methodCall><methodName>' + method +
      "</methodName><params>" + params.map(function (p) {
        return "<param>" + encode(p) + "</param>";
      }).join("") + "</params></methodCall>";
    var answer = await fetch(hubUrl(), { method: "POST", body: body, cache: "no-store",
                                         headers: { "Content-Type": "text/xml" } });
    if (!answer.ok) { throw new Error("the SAMP hub answered HTTP " + answer.status); }
    var doc = new DOMParser().parseFromString(await answer.text(), "text/xml");
    var fault = doc.getElementsByTagName("fault")[0];
    if (fault) {
      var detail = decode(elements(fault)[0]);
      var error = new Error((detail && detail.faultString) || "the SAMP hub refused");
      error.fault = true;
      throw error;
    }
    var value = doc.querySelector("params > param > value");
    return value ? decode(value) : null;
  }

  async function register() {
    var known = stored();
    if (known) { return known; }
    var answer = await call("samp.webhub.register", [{ "samp.name": "OPUS" }]);
    var key = answer["samp.private-key"];
    await call("samp.webhub.declareMetadata", [key, {
      "samp.name": "OPUS",
      "samp.description.text": "OPUS job server: results and provenance of jobs",
      "samp.documentation.url": location.origin + "/"
    }]);
    stored(key);
    return key;
  }

  async function send(button) {
    var message = { "samp.mtype": button.getAttribute("data-samp-mtype"), "samp.params": {
      "url": button.getAttribute("data-samp-url"),
      "name": button.getAttribute("data-samp-name") || "" } };
    for (var attempt = 0; ; attempt++) {
      var key = await register();
      try {
        return await call("samp.webhub.notifyAll", [key, message]);
      } catch (error) {
        if (!error.fault || attempt > 0) { throw error; }
        stored(null);  /* an unknown key: the hub restarted */
      }
    }
  }

  function status(button, text) {
    var next = button.nextElementSibling;
    if (next && next.classList.contains("samp-status")) { next.textContent = text; }
  }

  document.addEventListener("click", async function (event) {
    var button = event.target.closest && event.target.closest("button.samp");
    if (!button) { return; }
    button.disabled = true;
    status(button, "sending…");
    try {
      var recipients = await send(button);
      var count = Array.isArray(recipients) ? recipients.length : 0;
      status(button, count ? "sent to " + count + " SAMP application" + (count > 1 ? "s" : "")
                           : "sent; no SAMP application takes " +
                             button.getAttribute("data-samp-mtype"));
      button.setAttribute("data-samp-sent", String(count));
    } catch (error) {
      status(button, "not sent: " + (error.fault ? error.message :
        "no SAMP hub answers (start TOPCAT or Aladin, with its Web Profile)"));
    } finally {
      button.disabled = false;
    }
  });

  function reveal() {
    var buttons = document.querySelectorAll("button.samp[hidden]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].hidden = false; }
  }

  /* The job part of a job page is redrawn as the job runs: show its buttons too. */
  document.addEventListener("DOMContentLoaded", function () {
    reveal();
    var job = document.getElementById("main");
    if (job && window.MutationObserver) {
      new MutationObserver(reveal).observe(job, { childList: true, subtree: true });
    }
  });
})();
