// Types of build-state.mjs, which stays JavaScript so bin/cdil.mjs can load it without tsx.
export declare const BUILD_INPUTS_FILE: string;
export declare function isBuildCurrent(root: string, buildDir: string): boolean;
