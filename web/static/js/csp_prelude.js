// Loaded before /vendor/tfjs/tf.min.js, as a classic script.
//
// TF.js bundles regenerator-runtime, which publishes itself with a
// sloppy-mode assignment to an undeclared global and, when strict mode
// refuses it, falls back to `Function(...)`. The pages' Content-Security-Policy
// forbids `eval` and `Function` (no 'unsafe-eval'), so that fallback throws
// and TF.js fails to load. Declaring the global first makes the assignment
// succeed: nothing is evaluated from a string.
var regeneratorRuntime; // eslint-disable-line no-unused-vars, no-var
