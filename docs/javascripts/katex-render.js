// Typeset the maths that pymdownx.arithmatex (generic) left in `.arithmatex` elements, with the KaTeX that the
// docs build copied into the site (docs/hooks.py): no other host is asked for anything.
(function () {
  function typeset(root) {
    root.querySelectorAll('.arithmatex').forEach(function (el) {
      if (el.dataset.typeset) return;
      var tex = el.textContent.trim(), display = el.tagName === 'DIV';
      var m = tex.match(/^\\\(([\s\S]*)\\\)$/) || tex.match(/^\\\[([\s\S]*)\\\]$/);
      if (m) { display = tex.startsWith('\\['); tex = m[1]; }
      katex.render(tex, el, {displayMode: display, throwOnError: false});
      el.dataset.typeset = '1';
    });
  }
  if (typeof document$ !== 'undefined') document$.subscribe(function (d) { typeset(d.body || document.body); });
  else document.addEventListener('DOMContentLoaded', function () { typeset(document.body); });
})();
