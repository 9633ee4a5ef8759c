// The driver of httpapi/node_recipe_test.go: it imports the README's Node
// recipe (copied beside it as recipe.mjs) and answers each token read from
// stdin, one per line, with "ok SUB" or "error MESSAGE".
import { createInterface } from "node:readline";
import { verify } from "./recipe.mjs";

for await (const token of createInterface({ input: process.stdin })) {
  try {
    const payload = await verify(token);
    console.log(`ok ${payload.sub}`);
  } catch (e) {
    console.log(`error ${e.message}`);
  }
}
process.exit(0); // the recipe's EventSource would keep the process alive
