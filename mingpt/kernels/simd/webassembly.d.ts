// The part of the WebAssembly JavaScript API the SIMD kernels use. Node has it as a global, but
// the project compiles against lib ES2022 without the DOM, where TypeScript declares it, so the
// few declarations needed are here (names and shapes as in TypeScript's lib.dom.d.ts).
declare namespace WebAssembly {
  interface MemoryDescriptor {
    initial: number;
    maximum?: number;
    shared?: boolean;
  }
  class Memory {
    constructor(descriptor: MemoryDescriptor);
    readonly buffer: ArrayBuffer | SharedArrayBuffer;
    grow(delta: number): number;
  }
  class Module {
    constructor(bytes: BufferSource);
  }
  class Instance {
    constructor(module: Module, importObject?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  function validate(bytes: BufferSource): boolean;
}
