/** Name rules shared by the policy and inventory parsers. */

/** Group, network and rule names. */
export const NAME_RE = /^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$/;
export const NAME_RULE_TEXT =
  "names use lowercase letters, digits, '-' and '_', start and end with a letter or digit, at most 63 characters";

/** Port names (Marathon port definition / port mapping names): the same, plus '.'. */
export const PORT_NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
export const PORT_NAME_RULE_TEXT =
  "port names use lowercase letters, digits, '-', '_' and '.', start and end with a letter or digit, at most 63 characters";

/** The reserved peer name meaning every address. */
export const ANY = 'any';
