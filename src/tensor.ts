/** A dense float32 tensor, row-major: what flows between the ONNX graphs and the engine. */
export interface FloatTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
