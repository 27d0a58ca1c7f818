// The project's error vocabulary (errors.ts) and its mapping to gRPC and exit statuses (status.ts).
export * from "./errors.js";
export * from "./status.js";
