// Pier's small script: htmx does the polling; this only keeps a failed poll from being fatal.
document.addEventListener("htmx:sendError", function (event) {
  // The server did not answer (restart, network): keep the last status, mark it as stale; the
  // next poll tries again.
  event.target.classList.add("stale");
});
document.addEventListener("htmx:afterSwap", function (event) {
  event.target.classList.remove("stale");
});

// One confirmation pattern for every destructive action: a form with data-confirm asks first.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Copy buttons say "Copied" only when the clipboard took it; otherwise they say how to copy.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  var result = document.getElementById("copy-result");
  function said(text) { if (result) result.textContent = text; }
  function manual() { source.select(); said("Your browser did not allow copying: press Ctrl+C (⌘C) to copy the selected key."); }
  if (!navigator.clipboard || !window.isSecureContext) { manual(); return; }
  navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; said(""); }, manual);
});
