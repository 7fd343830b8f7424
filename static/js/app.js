// devport's own script, loaded on every page. No inline script anywhere: the
// CSP forbids it.
//
// Copy buttons: a click on a [data-copy-target] button copies the text of the
// element it names and says "Copied". The buttons are hidden in the HTML and
// shown here, so that without JavaScript nobody sees a button that does nothing.
(function () {
  "use strict";

  function showCopyButtons(root) {
    root.querySelectorAll("button[data-copy-target]").forEach(function (b) {
      b.hidden = false;
    });
  }

  function say(button, text) {
    if (!button.dataset.label) {
      button.dataset.label = button.textContent;
    }
    button.textContent = text;
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () {
      button.textContent = button.dataset.label;
    }, 2000);
  }

  // selectText selects the element's text, so the user can copy it by hand
  // where the clipboard is not available (a page served over plain HTTP).
  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest("button[data-copy-target]");
    if (!button) {
      return;
    }
    var target = document.querySelector(button.getAttribute("data-copy-target"));
    if (!target) {
      return;
    }
    var text = target.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied"); },
        function () { selectText(target); say(button, "Press Ctrl+C to copy"); }
      );
    } else {
      selectText(target);
      say(button, "Press Ctrl+C to copy");
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    showCopyButtons(document);
  });
  // HTMX swaps in new content (a devserver's status once it is ready).
  document.addEventListener("htmx:afterSettle", function () {
    showCopyButtons(document);
  });
})();

// Countdowns: an element with data-countdown="<RFC 3339 time>" says how long
// is left until then ("35 h 12 min 04 s left"), every second. The server
// renders the same in minutes, for pages without JavaScript.
(function () {
  "use strict";

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function tick() {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var end = Date.parse(el.getAttribute("data-countdown"));
      if (isNaN(end)) {
        return;
      }
      var left = Math.max(0, Math.floor((end - Date.now()) / 1000));
      if (left === 0) {
        el.textContent = el.getAttribute("data-countdown-done") || "ended";
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h > 0 ? h + " h " : "") + pad(m) + " min " + pad(s) + " s left";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
