/** A refused request: its HTTP status and the request field to fix (named in the message too). */
export class RequestError extends Error {
  override name = 'RequestError';
  constructor(
    readonly status: number,
    readonly field: string | null,
    message: string,
  ) {
    super(field ? `${field}: ${message}` : message);
  }
}

export const badRequest = (field: string, message: string): RequestError => new RequestError(400, field, message);
