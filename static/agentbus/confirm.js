// A form with data-confirm="question" asks before it submits. This replaces inline
// onsubmit="" handlers, which the Content-Security-Policy (no inline script) blocks.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
