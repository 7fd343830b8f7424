// The web terminal. On a devserver page, "Open terminal" starts xterm.js in
// the section's screen and bridges it to a shell in the devserver over a
// websocket: binary messages carry keystrokes and output, text messages are
// control messages ({"type":"resize","rows":..,"cols":..}). xterm.js is
// loaded from /static/vendor on first use, not on every page.
(function () {
  "use strict";

  var VENDOR = "/static/vendor/";
  var loading = null;
  // sessions maps a screen's selector to its open terminal; ended to the
  // terminal that stays on screen after its session ended, until the next.
  var sessions = {};
  var ended = {};

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  function loadStyle(href) {
    return new Promise(function (resolve, reject) {
      var l = document.createElement("link");
      l.rel = "stylesheet";
      l.href = href;
      l.onload = resolve;
      l.onerror = function () { reject(new Error("could not load " + href)); };
      document.head.appendChild(l);
    });
  }

  // xterm.js puts part of its styling (theme colours, row layout, scrollbar
  // colours) into <style> elements it creates. devport's Content Security
  // Policy (style-src 'self') refuses inline <style>, which would leave the
  // terminal unstyled and report violations. So, once the terminal is
  // wanted, document.createElement("style") returns an inert <template>
  // whose text goes into a constructed stylesheet adopted by the document:
  // styles made from script that the policy allows. Nothing else on
  // devport's pages creates <style> elements or sets style attributes.
  function adoptInlineStyles() {
    if (!("adoptedStyleSheets" in document) || !window.CSSStyleSheet ||
        typeof CSSStyleSheet.prototype.replaceSync !== "function") {
      return;
    }
    var create = document.createElement;
    document.createElement = function (name, options) {
      if (String(name).toLowerCase() !== "style") {
        return create.call(document, name, options);
      }
      var holder = create.call(document, "template");
      var sheet = new CSSStyleSheet();
      var text = "";
      document.adoptedStyleSheets = document.adoptedStyleSheets.concat([sheet]);
      Object.defineProperty(holder, "textContent", {
        get: function () { return text; },
        set: function (v) {
          text = v == null ? "" : String(v);
          sheet.replaceSync(text);
        }
      });
      var remove = holder.remove;
      holder.remove = function () {
        document.adoptedStyleSheets = document.adoptedStyleSheets.filter(function (s) { return s !== sheet; });
        remove.call(holder);
      };
      return holder;
    };

    // xterm.js colours a cell in 24-bit colour through the style attribute of
    // its <span>, which the policy refuses as well; the same declarations set
    // through the element's CSSOM style are allowed.
    var setAttribute = Element.prototype.setAttribute;
    HTMLSpanElement.prototype.setAttribute = function (name, value) {
      if (String(name).toLowerCase() === "style") {
        this.style.cssText = String(value);
        return;
      }
      setAttribute.call(this, name, value);
    };
  }

  function loadXterm() {
    if (!loading) {
      adoptInlineStyles();
      loading = Promise.all([
        loadStyle(VENDOR + "xterm.css"),
        loadStyle("/static/css/terminal.css"),
        loadScript(VENDOR + "xterm.js")
      ]).then(function () {
        return loadScript(VENDOR + "addon-fit.js");
      });
      loading.catch(function () { loading = null; });
    }
    return loading;
  }

  function statusOf(screenSel) {
    return document.querySelector('[data-terminal-status="' + screenSel + '"]');
  }

  function say(screenSel, text) {
    var el = statusOf(screenSel);
    if (el) {
      el.textContent = text;
    }
  }

  // showButtons shows "Open terminal" or "Close terminal" by whether a
  // terminal is open; run again when HTMX replaces the section's controls.
  function showButtons(root) {
    root.querySelectorAll("button[data-terminal-socket]").forEach(function (b) {
      var open = !!sessions[b.dataset.terminalScreen];
      b.hidden = open;
      b.disabled = false;
    });
    root.querySelectorAll("button[data-terminal-close]").forEach(function (b) {
      b.hidden = !sessions[b.dataset.terminalClose];
    });
  }

  // explain asks the websocket's address why it refused (it answers plain
  // HTTP with a JSON error before any upgrade), for a clear message.
  function explain(url, screenSel) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (resp) {
        if (resp.status === 426) {
          return null; // the terminal would open: the connection itself failed
        }
        return resp.json().then(function (body) { return body.error && body.error.message; });
      })
      .catch(function () { return null; })
      .then(function (message) {
        say(screenSel, message || "The terminal could not connect; try again in a moment.");
      });
  }

  function start(button) {
    var screenSel = button.dataset.terminalScreen;
    var screen = document.querySelector(screenSel);
    if (!screen || sessions[screenSel]) {
      return;
    }
    if (ended[screenSel]) {
      ended[screenSel].dispose();
      delete ended[screenSel];
    }
    screen.hidden = false;
    screen.textContent = "";
    var term = new window.Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14 });
    var fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    fit.fit();

    var path = button.dataset.terminalSocket;
    var url = new URL(path, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("rows", String(term.rows));
    url.searchParams.set("cols", String(term.cols));
    var ws = new WebSocket(url.toString());
    ws.binaryType = "arraybuffer";
    var opened = false;
    var encoder = new TextEncoder();
    var session = { term: term, ws: ws, closedHere: false };
    sessions[screenSel] = session;
    showButtons(document);

    function send(data) {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(data);
      }
    }
    ws.addEventListener("open", function () {
      opened = true;
      screen.dataset.terminalState = "open";
      say(screenSel, "Connected.");
      // Bring the terminal into view: xterm.js draws nothing while it is
      // off screen, and the person wants to type into it.
      screen.scrollIntoView({ block: "nearest" });
      term.focus();
    });
    ws.addEventListener("message", function (e) {
      if (typeof e.data !== "string") {
        term.write(new Uint8Array(e.data));
      }
    });
    ws.addEventListener("close", function (e) {
      delete sessions[screenSel];
      ended[screenSel] = term;
      window.removeEventListener("resize", onWindowResize);
      term.options.disableStdin = true;
      term.options.cursorBlink = false;
      screen.dataset.terminalState = "closed";
      showButtons(document);
      if (!opened) {
        explain(new URL(path, window.location.href).toString(), screenSel);
      } else if (session.closedHere) {
        say(screenSel, "You closed the terminal; its shell has ended.");
      } else if (e.reason) {
        say(screenSel, "The session ended: " + e.reason + ".");
      } else if (e.code === 1000 || e.code === 1005) {
        say(screenSel, "The session ended.");
      } else {
        say(screenSel, "The connection was lost (code " + e.code + ").");
      }
    });
    term.onData(function (d) { send(encoder.encode(d)); });
    term.onBinary(function (d) {
      var bytes = new Uint8Array(d.length);
      for (var i = 0; i < d.length; i++) {
        bytes[i] = d.charCodeAt(i) & 0xff;
      }
      send(bytes);
    });
    term.onResize(function (size) {
      send(JSON.stringify({ type: "resize", rows: size.rows, cols: size.cols }));
    });
    var resizeTimer = null;
    function onWindowResize() {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { fit.fit(); }, 100);
    }
    window.addEventListener("resize", onWindowResize);
  }

  document.addEventListener("click", function (e) {
    var open = e.target.closest("button[data-terminal-socket]");
    if (open) {
      open.disabled = true;
      say(open.dataset.terminalScreen, "Connecting…");
      loadXterm().then(function () { start(open); }, function (err) {
        open.disabled = false;
        say(open.dataset.terminalScreen, "The terminal could not load: " + err.message + ".");
      });
      return;
    }
    var close = e.target.closest("button[data-terminal-close]");
    var session = close && sessions[close.dataset.terminalClose];
    if (session) {
      session.closedHere = true;
      session.ws.close(1000, "closed in the page");
    }
  });

  document.addEventListener("DOMContentLoaded", function () { showButtons(document); });
  document.addEventListener("htmx:load", function (e) { showButtons(e.target); });
})();
