// A small seeded generator for tests that pick ranges and operations: the fault relay's.
export { rng } from '../../tools/fault-relay/relay';
