// The bfx TypeScript client: `import { Client } from "./dist/index.js"`.
export { Client } from "./client.js";
export type { ClientOptions } from "./client.js";
export * from "./errors.js";
export * from "./generated.js";
export { parse as parseJson, stringify as stringifyJson } from "./json.js";
