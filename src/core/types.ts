// Small value types the whole command path shares: the modules that use them
// sit at every level of the core (backstore, opcodes, logical-unit, command),
// so they live below all of them.

export type MaybePromise<T> = T | Promise<T>;

/** Direction of a command's data: none, to the initiator (IN), from it (OUT). */
export const DataDir = { NONE: 0, IN: 1, OUT: 2 } as const;
export type DataDir = (typeof DataDir)[keyof typeof DataDir];

/** SAM task attributes. */
export const TaskAttr = { SIMPLE: 0, ORDERED: 1, HEAD_OF_QUEUE: 2, ACA: 3 } as const;
export type TaskAttr = (typeof TaskAttr)[keyof typeof TaskAttr];

/** Where a command is in its life: waiting behind an ORDERED task (DELAYED), running, done. */
export const CmdState = { NEW: 0, DELAYED: 1, RUNNING: 2, DONE: 3 } as const;
