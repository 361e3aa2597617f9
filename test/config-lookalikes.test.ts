/**
 * Variables that look like ours but are not: warned about at start-up, refused under
 * NODE_ENV=production, and nothing said about the platform's own (Kubernetes' service links,
 * the shell's, Node's, npm's).
 */
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../src/config/config.js';
import { lookalikes } from '../src/config/lookalikes.js';

const PLATFORM = {
  HOME: '/root',
  HOSTNAME: 'pod-1',
  PATH: '/bin',
  PWD: '/app',
  OLDPWD: '/',
  SHLVL: '1',
  TERM: 'xterm',
  LANG: 'C.UTF-8',
  TZ: 'UTC',
  USER: 'node',
  NODE_VERSION: '24.1.0',
  YARN_VERSION: '1.22',
  NODE_OPTIONS: '--max-old-space-size=4096',
  NPM_CONFIG_LOGLEVEL: 'warn',
  KUBERNETES_SERVICE_HOST: '10.0.0.1',
  KUBERNETES_PORT_443_TCP: 'tcp://10.0.0.1:443',
  PREDIFY_SERVE_SERVICE_HOST: '10.0.0.2',
  PREDIFY_SERVE_SERVICE_PORT_HTTP: '8080',
  MODEL_SERVER_PORT: 'tcp://10.0.0.3:8080',
  MODEL_SERVER_PORT_8080_TCP_ADDR: '10.0.0.3',
  ONNXRUNTIME_NODE_INSTALL: 'skip',
};

describe('lookalikes', () => {
  it.each([
    ['MODELDIR', 'MODEL_DIR'],
    ['model_dir', 'MODEL_DIR'],
    ['MODEL_DIRECTORY', 'MODEL_DIR'],
    ['BATCHSIZE', 'BATCH_MAX_SIZE'],
    ['BATCH_SIZE', 'BATCH_MAX_SIZE'],
    ['LOG_LEVL', 'LOG_LEVEL'],
    ['API_KEY', 'API_KEYS'],
    ['MAX_TIMESTEP', 'MAX_TIMESTEPS'],
    ['ENGINE_WORKERS', 'ENGINE_WORKER'],
    ['GPU_REQUIRE', 'GPU_REQUIRED'],
    ['ORT_THREADS', 'ORT_INTRA_OP_THREADS'],
    ['PORTS', 'PORT'],
  ])('%s looks like %s', (name, meant) => {
    expect(lookalikes({ [name]: 'x' }, CONFIG_VARIABLES)).toEqual([{ name, meant }]);
  });

  it("says nothing of the platform's own variables, or of ours", () => {
    const ours = Object.fromEntries(CONFIG_VARIABLES.map((k) => [k, 'x']));
    expect(lookalikes({ ...PLATFORM, ...ours }, CONFIG_VARIABLES)).toEqual([]);
  });

  it('refuses them under NODE_ENV=production, naming each and what it means', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', MODELDIR: '/models', BATCHSIZE: '4' })).toThrow(
      'invalid configuration: MODELDIR is not a setting (did you mean MODEL_DIR?); BATCHSIZE is not a setting (did you mean BATCH_MAX_SIZE?)',
    );
    expect(loadConfig({ MODELDIR: '/models' }).MODEL_DIR).toMatch(/fashion-pc$/);
    expect(() => loadConfig({ ...PLATFORM, NODE_ENV: 'production' })).not.toThrow();
  });
});
