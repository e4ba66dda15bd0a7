// winston JSON logs. Reconciles log through a child logger that carries namespace and name.
import winston from "winston";

export type Logger = winston.Logger;

export function createLogger(level: string): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    defaultMeta: { component: "continual-clip-operator" },
    transports: [new winston.transports.Console({ stderrLevels: ["error", "warn", "info", "debug"] })],
  });
}

/** Removes query strings from URLs in an error message: presigned S3 URLs carry credentials. */
export function sanitizeMessage(message: string): string {
  return message
    .replace(/(https?:\/\/[^\s?#"']*)\?[^\s"']*/g, "$1")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 1024);
}

export function errorMessage(err: unknown): string {
  return sanitizeMessage(err instanceof Error ? err.message : String(err));
}
