// `soci`: the SOCI command line (program.ts); a failure ends the process with the CLI's exit status.
import { sociProgram } from "./program.js";
import { reportAndExit } from "../errors/status.js";

const args = process.argv.slice(2);
sociProgram(args)
  .then((program) => program.parseAsync(args, { from: "user" }))
  .catch((err) => reportAndExit("soci", err));
