// gifenc ships no type declarations; image-io.ts narrows it to what it uses.
declare module 'gifenc';
