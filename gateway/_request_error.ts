// A failure the gateway answers itself, with an HTTP status and a SQLSTATE for Neon's error
// body. The codes are PostgreSQL's, chosen for what a client can do about the failure:
//
//   08P01 protocol_violation        a malformed request, body or connection string
//   28000 invalid_authorization     no user name
//   42501 insufficient_privilege    a parameter or an address the gateway refuses
//   0A000 feature_not_supported     what this gateway does not do (JWT)
//   22021 character_not_in_repertoire  a NUL character in a query or parameter
//   54000 program_limit_exceeded    too large a request, response or parameter list
//   53300 too_many_connections      the gateway is at its session or pool limit (503)
//   57P03 cannot_connect_now        the gateway is shutting down (503)

/** A failure of the request (400) or a refusal for load (503), answered as Neon's proxy does. */
export class RequestError extends Error {
  /**
   * @param status The HTTP status: 400 for the request's fault, 503 for load.
   * @param code The SQLSTATE of the error body.
   * @param message What failed and why; never a password or a client's file path.
   */
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}
