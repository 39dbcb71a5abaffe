/* The console's behaviour on every page, bound here because the Content-Security-Policy
   refuses inline scripts, onclick= attributes and javascript: links. */
(function () {
  'use strict';

  // Flask-Admin's placeholder links (href="javascript:void(0)") do nothing: cancel the
  // navigation, so that the browser never has to refuse a javascript: address. Caught on
  // the way down, before any handler can stop the event; the link's own handlers
  // (dropdowns, filters) still run.
  document.addEventListener('click', function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (target && target.closest('a[href^="javascript:"]')) { event.preventDefault(); }
  }, true);

  document.addEventListener('click', function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }

    var back = target.closest('[data-history-back]');
    if (back) { event.preventDefault(); window.history.back(); return; }

    var print = target.closest('[data-print]');
    if (print) { event.preventDefault(); window.print(); return; }

    // "With selected" menu of a list: Flask-Admin's actions.js does the work.
    var action = target.closest('[data-model-action]');
    if (action && window.modelActions) {
      event.preventDefault();
      window.modelActions.execute(action.getAttribute('data-model-action'));
    }
  });

  // A field shown only for one choice of a radio group:
  // <input data-shown-when="group=value"> hides its form group for the other choices.
  function conditionalFields() {
    document.querySelectorAll('[data-shown-when]').forEach(function (field) {
      var rule = field.getAttribute('data-shown-when').split('=');
      var radios = document.querySelectorAll('input[type="radio"][name="' + rule[0] + '"]');
      var group = field.closest('.form-group') || field;
      function update() {
        var chosen = document.querySelector('input[type="radio"][name="' + rule[0] + '"]:checked');
        group.hidden = !chosen || chosen.value !== rule[1];
      }
      radios.forEach(function (radio) { radio.addEventListener('change', update); });
      update();
    });
  }

  function ready() {
    conditionalFields();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', ready);
  } else {
    ready();
  }
})();
