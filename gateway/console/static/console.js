// The console works without this file; it only adds conveniences. No inline script anywhere
// (the Content Security Policy forbids it), so everything is wired here by data- attributes.
"use strict";

document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});

document.addEventListener("change", function (event) {
  // A select that names the next step submits its form at once; without script the
  // form's own button does it.
  if (event.target.matches("select[data-autosubmit]")) {
    event.target.form.submit();
  }
});

document.querySelectorAll("[data-copy]").forEach(function (button) {
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand("copy")) {
        done();
      }
    }
  });
});

// The overview reads its figures again every minute while it is in view.
if (document.querySelector("[data-refresh]")) {
  setInterval(function () {
    if (document.visibilityState === "visible") {
      window.location.reload();
    }
  }, 60000);
}
