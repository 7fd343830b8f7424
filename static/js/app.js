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
