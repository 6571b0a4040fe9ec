// Errors from @kubernetes/client-node's generated API clients, for one-line messages and status checks.

/** The HTTP status of an ApiException, if err is one. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * One line: the apiserver's Status message when the error carries one ("HTTP 409: ... the object has been
 * modified"), else the error's first line. ApiException's own message spans lines and dumps headers.
 */
export function apiErrorMessage(err: unknown): string {
  const code = statusOf(err);
  const body = (err as { body?: unknown } | undefined)?.body;
  let message: unknown;
  try {
    message = (typeof body === 'string' ? (JSON.parse(body) as { message?: unknown }) : (body as { message?: unknown } | undefined))
      ?.message;
  } catch {
    // not a Status document
  }
  if (code !== undefined && typeof message === 'string') return `HTTP ${code}: ${message}`;
  const text = err instanceof Error ? err.message : String(err);
  return code !== undefined ? `HTTP ${code}: ${text.split('\n')[0]}` : text.split('\n')[0]!;
}
