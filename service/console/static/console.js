// Progressive enhancement only: every form works without this file.
// A comment box's "N characters left" follows what is typed (R25: at most the portal's comment length).
(function () {
  "use strict";
  function follow(box) {
    var counter = document.getElementById(box.getAttribute("data-counter"));
    var limit = parseInt(box.getAttribute("maxlength"), 10);
    if (!counter || !limit) { return; }
    var update = function () {
      var left = limit - box.value.length;
      counter.textContent = left + (left === 1 ? " character left" : " characters left");
    };
    box.addEventListener("input", update);
    update();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("textarea[data-counter]");
    for (var i = 0; i < boxes.length; i += 1) { follow(boxes[i]); }
  });
}());
