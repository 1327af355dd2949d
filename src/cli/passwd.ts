/**
 * `sluice passwd NAME`: print a users-file line. The password is read from
 * the terminal without echo, or from stdin when piped, never from argv
 * (argv is visible to every user on the host via ps).
 */
import { hashPassword } from '../auth/hash.js'

async function readPiped (): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length
    if (size > 4096) throw new Error('password longer than 4096 bytes')
    chunks.push(chunk as Buffer)
  }
  // One line: the trailing newline of `echo pw |` is not part of it.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}

async function readHidden (prompt: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(prompt)
  stdin.setRawMode(true)
  stdin.resume()
  let value = ''
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (buf: Buffer): void => {
        for (const ch of buf.toString('utf8')) {
          if (ch === '\r' || ch === '\n') { stdin.off('data', onData); resolve(value); return }
          if (ch === '\u0003') { stdin.off('data', onData); reject(new Error('interrupted')); return }
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1)
          else value += ch
        }
      }
      stdin.on('data', onData)
    })
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    process.stderr.write('\n')
  }
}

export async function passwd (name: string, scheme: 'bcrypt' | 'scrypt'): Promise<number> {
  if (name === '' || name.includes(':') || /\s/.test(name)) {
    process.stderr.write('sluice: a user name may not be empty or contain ":" or spaces\n')
    return 2
  }
  let password: string
  if (process.stdin.isTTY) {
    password = await readHidden(`Password for ${name}: `)
    const again = await readHidden('Again: ')
    if (again !== password) { process.stderr.write('sluice: passwords do not match\n'); return 2 }
  } else {
    try {
      password = await readPiped()
    } catch (err) {
      process.stderr.write(`sluice: ${(err as Error).message}\n`)
      return 2
    }
  }
  if (password === '') { process.stderr.write('sluice: empty password\n'); return 2 }
  process.stdout.write(`${name}:${await hashPassword(password, scheme)}\n`)
  return 0
}
