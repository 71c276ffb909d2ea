// The submit form: example plans fill the form without leaving the page.
(function () {
  "use strict";
  var examples = JSON.parse(document.getElementById("plan-examples").textContent);
  document.querySelectorAll("[data-example]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var example = examples[link.dataset.example];
      if (!example) return;
      event.preventDefault();
      document.getElementById("id_requirements").value = example.requirements;
      document.getElementById("id_plan").value = example.plan;
    });
  });
  // Tab inserts two spaces in the plan editor instead of leaving the field.
  var plan = document.getElementById("id_plan");
  plan.addEventListener("keydown", function (event) {
    if (event.key !== "Tab" || event.shiftKey) return;
    event.preventDefault();
    var start = plan.selectionStart;
    plan.setRangeText("  ", start, plan.selectionEnd, "end");
  });
})();
