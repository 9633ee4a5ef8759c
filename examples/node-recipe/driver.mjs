// The driver of httpapi/node_recipe_test.go: it imports the README's Node
// recipe (copied beside it as recipe.mjs) and answers each token read from
// stdin, one per line, with "ok SUB" or "error MESSAGE".
// A line "+clock S" instead moves the wall clock (Date.now, which jose's
// JWKS cache reads) S seconds on and answers "ok clock".
import { createInterface } from "node:readline";
import { verify } from "./recipe.mjs";

const wallClock = Date.now;
let ahead = 0;
Date.now = () => wallClock() + ahead;

for await (const token of createInterface({ input: process.stdin })) {
  if (token.startsWith("+clock ")) {
    ahead += 1000 * Number(token.slice("+clock ".length));
    console.log("ok clock");
    continue;
  }
  try {
    const payload = await verify(token);
    console.log(`ok ${payload.sub}`);
  } catch (e) {
    console.log(`error ${e.message}`);
  }
}
process.exit(0); // the recipe's EventSource would keep the process alive
