/**
 * The compile-error taxonomy: a COMPILE_ERROR log is filed under its first error. A build log holds
 * much more than errors: the harness's own command lines (`nvcc ... -Xptxas=-O3 ...`), ninja's
 * progress, warnings, notes and source excerpts. Matching patterns anywhere in it files every CUDA
 * build under "ptxas" because of that flag, so the log is read line by line instead: command lines,
 * warnings and context are skipped, the first line that states an error (nvcc, g++, ptxas, nvlink,
 * ld, the loader, Python) is taken, and only that line is classified.
 */

/** The first error of a log and the category it is filed under. */
export interface CompileErrorClass {
  /** The first error line (trimmed), or null when the log states none. */
  firstError: string | null;
  category: string;
}

/** Categories in the order their patterns are tried on the first error; the first match wins. */
export const COMPILE_ERROR_CATEGORIES: ReadonlyArray<readonly [string, RegExp]> = [
  [
    "entry point / signature",
    /entry symbol|entry file|entry point|signature|not registered|not exported|rejected by generate/i,
  ],
  [
    "host/device confusion",
    /__host__|__device__|__global__ function|host function|device function|in device code|host code/i,
  ],
  [
    "resource limits (ptxas/shared memory)",
    /too much (shared|local|constant) data|too many (registers|resources)|out of resources|parameter space overflowed|uses too much|exceeds? (the )?(maximum|limit)/i,
  ],
  [
    "link error / undefined symbol",
    /undefined reference|undefined symbol|unresolved extern|nvlink|cannot find -l|ld returned|multiple definition/i,
  ],
  [
    "missing module or header",
    /No such file or directory|cannot open source file|ModuleNotFoundError|No module named|ImportError|cannot open include/i,
  ],
  [
    "undefined name / API misuse",
    /is undefined|was not declared|undeclared identifier|not declared in this scope|NameError|is not defined|has no (member|attribute)|is not a member|no member named|AttributeError/i,
  ],
  [
    "syntax error",
    /SyntaxError|syntax error|invalid syntax|expected (a|an)\b|expected ['"`‘]|expected .* before|expected (primary-)?expression|IndentationError|unterminated|stray '|missing terminating|unexpected/i,
  ],
  [
    "type or dtype mismatch",
    /no suitable conversion|cannot convert|invalid conversion|incompatible|TypeError|dtype|no instance of (overloaded )?function|no matching function|cannot be used to initialize|conversion from .* to/i,
  ],
  ["Triton compilation error (other)", /CompilationError|triton/i],
  ["build timeout or crash", /build exceeded|build process died|timed out|Killed/i],
];

// A line that states an error, by tool. The capture is the message, used to classify.
const ERROR_LINE: RegExp[] = [
  // g++/clang and nvcc's preprocessor: file:line[:col]: [fatal] error: message
  /^\S.*?:\d+(?::\d+)?: (?:fatal )?error: .+/,
  // nvcc's front end (EDG) and cicc: file(line): [catastrophic] error[ #n-D]: message, or "Error:"
  /^\S.*?\(\d+\): (?:catastrophic )?(?:error|Error)(?: #\d+(?:-D)?)?: .+/,
  // "At end of source: error: ..." (EDG)
  /^At end of source: error: .+/,
  // ptxas / nvlink / fatbinary: "ptxas error   : ..." or "ptxas fatal   : ..."
  /^(?:ptxas|nvlink|nvcc|fatbinary|cicc|cudafe\+\+)\b.*?\b(?:error|fatal)\s*: .+/i,
  // the linker: "/usr/bin/ld: x.o: undefined reference to ..." or "cannot find -lfoo"
  /^\S*\bld(?:\.\w+)?: .*(?:undefined reference|cannot find|multiple definition|error).*/,
  /^.*: undefined reference to .+/,
  // the loader, as Python or ctypes report it
  /undefined symbol: \S+/,
  // Python exceptions (build_python, import failures): "SyntaxError: ...", "ImportError: ..."
  /^(?:\w+\.)*(?:\w*Error|\w*Exception): .+/,
  // a bare "error: ..." (nvcc driver, g++ driver, setuptools)
  /^(?:\S+: )?(?:fatal )?error: .+/i,
];

// Lines that wrap the real error without saying what it is, or repeat a command.
const WRAPPER_LINE = [
  /Error building extension '/,
  /^compiler failed/,
  /^ninja: build stopped/,
  /^FAILED: /,
  /^\d+ errors? detected in the compilation of/,
  /^compilation terminated\./,
  /^collect2: error: ld returned/,
  /^subprocess\.CalledProcessError/,
  /^error: command .* failed with exit (?:code|status)/,
];

// A command line as the harness or ninja logs it: "$ cmd", "[1/3] cmd", or a compiler followed by flags.
const COMMAND_LINE = [
  /^\$ /,
  /^\[\d+\/\d+\] /,
  /^(?:\S*\/)?(?:nvcc|g\+\+|c\+\+|gcc|clang\+\+|clang|cc|ld|ptxas|nvlink|fatbinary|ninja)(?:-\d+)?\s+(?!(?:error|fatal|warning|info)\b)\S/,
];

const WARNING_LINE = /(?:^|\s|:)(?:warning|note|remark)(?: #\d+(?:-D)?)?\s*:/i;

/** Whether a log line states an error (and is not a command, a warning, or a wrapper). */
function isErrorLine(line: string): boolean {
  if (!line || COMMAND_LINE.some((r) => r.test(line))) return false;
  if (WRAPPER_LINE.some((r) => r.test(line))) return false;
  // "file:3:1: warning: ... error ..." is a warning whatever it quotes; an error line is not a warning.
  if (WARNING_LINE.test(line) && !/\b(?:error|Error|fatal)\b\s*(?:#\d+(?:-D)?)?\s*:/.test(line)) {
    return false;
  }
  if (/^\s*\d+\s*\|/.test(line) || /^\s*\|/.test(line)) return false; // g++'s source excerpts
  return ERROR_LINE.some((r) => r.test(line));
}

/** The first error line of a build log, or null. */
export function firstErrorLine(log: string | null | undefined): string | null {
  if (!log) return null;
  for (const raw of log.split(/\r?\n/)) {
    const line = raw.trim();
    if (isErrorLine(line)) return line;
  }
  return null;
}

/** Files a COMPILE_ERROR log under the category of its first error. */
export function classifyCompileError(log: string | null | undefined): CompileErrorClass {
  if (!log || !log.trim()) return { firstError: null, category: "no log" };
  const first = firstErrorLine(log);
  // No line states an error (a bare reason such as "build exceeded 600 s"): classify the log's
  // non-command lines, so a harness flag still cannot decide the category.
  const text = first ?? log.split(/\r?\n/).map((l) => l.trim())
    .filter((l) => l && !COMMAND_LINE.some((r) => r.test(l))).join("\n");
  for (const [category, re] of COMPILE_ERROR_CATEGORIES) {
    if (re.test(text)) return { firstError: first, category };
  }
  return { firstError: first, category: "other" };
}
