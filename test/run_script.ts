// Test helper (not a test file): runs one of the project's scripts as a user would, in a child
// process, and collects what it prints.
import { spawn } from 'node:child_process';
import { ROOT } from './helpers.ts';

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node --import tsx <script> ...args` in the project root, colours off, progress bar quiet; `env` adds or unsets variables. */
export function runScript(script: string, args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: ROOT,
      env: { ...process.env, MINGPT_QUIET: '1', NO_COLOR: '1', FORCE_COLOR: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
