// MathJax 3 settings for the math pymdownx.arithmatex (and docs/hooks/rest_math.py) emits:
// typeset only elements of class "arithmatex", delimited by \( \) and \[ \].
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
