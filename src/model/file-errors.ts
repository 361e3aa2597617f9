/**
 * What went wrong reading a model's file, said as such: a permission problem must not look like
 * a wrong path (a model directory written as root and served by a non-root user is the common
 * case: the import writes 0755/0644, but a copy or a mount may not keep that).
 */
import { errors, type ServiceError } from '../errors.js';

const uid = () => (typeof process.getuid === 'function' ? process.getuid() : undefined);

export function fileError(err: unknown, file: string): ServiceError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
      return errors.modelNotFound(file);
    case 'EACCES':
    case 'EPERM':
      return errors.modelPermissionDenied(file, uid());
    case 'ENOTDIR':
      return errors.modelNotADirectory(file);
    default:
      return errors.modelUnreadable(file, code ?? (err instanceof Error ? err.message : String(err)));
  }
}
