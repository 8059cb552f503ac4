/** A promise a test resolves when it chooses: `opened` settles once `open()` is called. */
export function latch(): { readonly opened: Promise<void>; readonly open: () => void } {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}
