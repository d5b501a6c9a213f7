/** The two address families of the firewall, and how many bits an address of each has. */
export type Family = 4 | 6;

export const FAMILIES: readonly Family[] = [4, 6];

export const ADDRESS_BITS: Readonly<Record<Family, number>> = { 4: 32, 6: 128 };
