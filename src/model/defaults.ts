// Attribute defaults come from specs/storage-object.yaml, the one source.
import type { StorageAttributes } from './attributes';
import { specs } from '../config/specs';

export function storageAttributeDefaults(): StorageAttributes {
  return specs().storageAttributeDefaults();
}
