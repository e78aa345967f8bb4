/** A session on the console at `baseUrl` (an Airlock's address) for `token`: the login form, then its POST with the form's nonce cookie. */
export async function consoleLogin(baseUrl: string, token: string): Promise<{ res: Response; cookie?: string }> {
  const ui = `${baseUrl}/-/ui/login`;
  const cookieOf = (res: Response, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));
  const form = await fetch(ui);
  const nonceCookie = cookieOf(form, 'airlock_login')!.split(';')[0];
  const nonce = /name="nonce" value="([^"]+)"/.exec(await form.text())![1];
  const res = await fetch(ui, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: nonceCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ nonce, token }),
  });
  return { res, cookie: cookieOf(res, 'airlock_console')?.split(';')[0] };
}
