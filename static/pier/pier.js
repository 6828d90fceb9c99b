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
