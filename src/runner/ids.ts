/** Request ids, shared by the CLI, the service and the runner. */
import { randomBytes } from "node:crypto";

/** A request id: time-ordered and unique enough to name in commits and logs. */
export function newRequestId(): string {
    return `r-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}
