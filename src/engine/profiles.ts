/** A model's hyperparameter profiles as the engine runs them: update weights per PCoder. */
import { errors } from '../errors.js';
import { coefficientsOf, type Coefficients } from '../model/hyperparameters.js';
import { profilesOf, type Manifest } from '../model/manifest.js';

/** s_i per PCoder: 1 without gradient scaling (the exporter stores 1 then). */
export const gradientScales = (manifest: Manifest) => manifest.pcoders.map((pc) => pc.gradientScale.scale);

/** Every profile's update weights, computed once when the model opens. */
export function profileCoefficients(manifest: Manifest): ReadonlyMap<string, readonly Coefficients[]> {
  const scales = gradientScales(manifest);
  return new Map(
    Object.entries(profilesOf(manifest)).map(([name, p]) => [
      name,
      coefficientsOf(p.hyperparameters, scales),
    ]),
  );
}

/** One profile's update weights; an unknown name is the client's error, naming the known ones. */
export function coefficientsOfProfile(
  profiles: ReadonlyMap<string, readonly Coefficients[]>,
  name: string,
): readonly Coefficients[] {
  const found = profiles.get(name);
  if (!found) throw errors.unknownProfile(name, [...profiles.keys()]);
  return found;
}
